// electron.vite.config.ts builds what `npm start` and electron-builder need, without the Electron
// binary: an ESM main with the engine host as its own entry, a CommonJS preload (sandboxed window),
// and the renderer with its CSP; main never bundles the renderer, the preload never bundles Node.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { run } from '../helpers/qemu.js';

describe('electron-vite build', () => {
  it('emits out/main/index.js, out/main/engine-host.js, out/preload/preload.cjs and out/renderer/index.html', () => {
    const r = run('node', ['node_modules/electron-vite/bin/electron-vite.js', 'build', '--logLevel', 'warn']);
    expect(r.stderr + r.stdout).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    for (const f of [
      'out/main/index.js',
      'out/main/engine-host.js',
      'out/preload/preload.cjs',
      'out/renderer/index.html',
    ])
      expect(existsSync(f), f).toBe(true);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { main: string };
    expect(pkg.main).toBe('out/main/index.js');
    const preload = readFileSync('out/preload/preload.cjs', 'utf8');
    expect(preload).toMatch(/require\("electron"\)/);
    expect(preload).not.toMatch(/^import /m);
    expect(preload).not.toMatch(/require\("node:/);
    const main = readFileSync('out/main/index.js', 'utf8');
    expect(main).toMatch(/from "electron"/);
    expect(main).toMatch(/preload\/preload\.cjs/);
    expect(main).toMatch(/engine-host\.js/);
    const host = readFileSync('out/main/engine-host.js', 'utf8');
    expect(host).not.toMatch(/from "electron"/); // the engine host needs no Electron API beyond process.parentPort
    const html = readFileSync('out/renderer/index.html', 'utf8');
    expect(html).toMatch(/Content-Security-Policy" content="default-src 'none'; script-src 'self'/);
  });
});
