// `npm start` where Electron's binary cannot run (this machine: not downloaded, no display): one line
// says so, and the same app is served in browser mode on the samples, at a URL that serves it.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('npm start without Electron', () => {
  it('says why in one line and serves the app on the samples', async () => {
    const env: Record<string, string | undefined> = { ...process.env, DISPLAY: '', WAYLAND_DISPLAY: '' };
    const proc = spawn('npm', ['start', '--silent', '--', '--port', '0'], { env, detached: true });
    let out = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 100_000);
        proc.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /(http:\/\/\S+\?token=\S+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
        proc.once('exit', (code) => reject(new Error(`npm start exited with ${code}: ${out}`)));
      });
      const lines = out.split('\n').filter((l) => l.trim());
      expect(lines[0]).toMatch(/^Electron cannot run here \(.+\): starting the app in your browser instead\.$/);
      expect(out).not.toMatch(/Error|at .*\(/);
      const page = await fetch(url);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<div id="app"');
      const script = /src="\.?\/?(assets\/[^"]+\.js)"/.exec(html);
      expect(script).not.toBeNull();
      // The page's own assets come with the cookie the first load set (serve's token gate), as in a browser.
      const cookie = page.headers.get('set-cookie')?.split(';')[0];
      expect(cookie).toBeTruthy();
      expect((await fetch(new URL(script![1]!, url), { headers: { cookie: cookie! } })).status).toBe(200);
    } finally {
      if (proc.exitCode === null) process.kill(-proc.pid!, 'SIGTERM');
    }
  });
});
