// Hostile pages against `qcow2-doctor serve`: a malformed path must not kill it, and nothing is
// served without the token (from the printed URL, then from its HttpOnly, SameSite=Strict cookie).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createQcow2, tempDir } from '../helpers/qemu.js';
import { startServe, type Served } from '../e2e/harness.js';

const root = tempDir('q2d-gate-');
let served: Served;

beforeAll(async () => {
  createQcow2(join(root.dir, 'disk.qcow2'), '1M');
  served = await startServe(root.dir);
});

afterAll(async () => {
  await served?.stop();
  root.cleanup();
});

function get(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: served.port, path, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function ws(url: string, headers: Record<string, string>): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const s = new WebSocket(url, { origin: served.origin, headers });
    s.once('open', () => resolve(s));
    s.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
    s.once('error', reject);
  });
}

describe('serve under attack', () => {
  it('GET /%zz does not kill serve', async () => {
    for (const path of ['/%zz', '/%', `/%E0%A4%A?token=${served.token}`, '/ws%zz']) {
      const r = await get(path);
      expect(r.status).toBe(400);
    }
    expect(served.proc.exitCode).toBeNull();
    expect((await get(`/?token=${served.token}`)).status).toBe(200);
  });

  it('GET / without the token is refused with a one-line page saying to open the printed URL', async () => {
    for (const path of ['/', '/index.html', '/assets/', `/?token=${'x'.repeat(served.token.length)}`]) {
      const r = await get(path);
      expect(r.status).toBe(401);
      expect(r.body).toMatch(/open the URL that <code>qcow2-doctor serve<\/code> printed/);
      expect(r.body.trim().split('\n')).toHaveLength(1);
      expect(r.body).not.toContain('<div id="app">');
    }
  });

  it('the token in the URL sets an HttpOnly, SameSite=Strict cookie that admits the page and the WebSocket', async () => {
    const first = await get(`/?token=${served.token}`);
    const cookie = String(first.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const pair = cookie.split(';')[0]!;
    expect(pair).toBe(`q2d_token_${served.port}=${served.token}`);
    const again = await get('/', { cookie: pair });
    expect(again.status).toBe(200);
    expect(again.body).toContain('<div id="app">');
    expect(await get('/', { cookie: `q2d_token_${served.port}=nope` })).toMatchObject({ status: 401 });
    const sock = await ws(`ws://127.0.0.1:${served.port}/ws`, { cookie: pair });
    expect(typeof sock).not.toBe('number');
    (sock as WebSocket).close();
    expect(await ws(`ws://127.0.0.1:${served.port}/ws`, {})).toBe(401);
    expect(await ws(`ws://127.0.0.1:${served.port}/ws?token=`, { cookie: `q2d_token_${served.port + 1}=x` })).toBe(401);
  });

  it('an unhandled rejection in a handler is logged and the serve process survives it', () => {
    // The guard serve installs, in a process of its own: a rejection nobody handles, then life goes on.
    const script = `
      const { installRejectionGuard } = await import(${JSON.stringify(join(process.cwd(), 'dist/engine/service/process-guard.js'))});
      installRejectionGuard();
      Promise.reject(new Error('handler blew up'));
      setTimeout(() => console.log('still answering'), 50);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('still answering');
    expect(r.stderr).toMatch(/unexpected failure in a request \(the server goes on\): Error: handler blew up/);
  });
});
