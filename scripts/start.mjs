// `npm start` / `npm run dev` / `npm run preview`: the desktop app where Electron's binary can run;
// elsewhere (binary not downloaded, no display) the same app in a browser, served by
// `qcow2-doctor serve` on the bundled samples, with its URL printed and opened when a display exists.
//   node scripts/start.mjs [--dev | --preview] [-- serve options, e.g. --port 0]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const mode = args.includes('--dev') ? 'dev' : args.includes('--preview') ? 'preview' : 'start';
const serveArgs = args.filter((a) => a !== '--dev' && a !== '--preview' && a !== '--');
const hasDisplay =
  process.platform === 'win32' ||
  process.platform === 'darwin' ||
  Boolean(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);

/** Why Electron cannot run here, or null when it can. */
function electronBlocker() {
  if (process.env.QCOW2_DOCTOR_BROWSER) return 'browser mode was asked for (QCOW2_DOCTOR_BROWSER)';
  // Not require('electron'): its index.js tries to download a missing binary, then throws.
  const dir = 'node_modules/electron';
  const pathFile = join(dir, 'path.txt');
  const binary = existsSync(pathFile) ? join(dir, 'dist', readFileSync(pathFile, 'utf8').trim()) : null;
  if (!binary || !existsSync(binary)) return "Electron's binary is not installed";
  if (!hasDisplay) return 'there is no display';
  return null;
}

const run = (cmd, cmdArgs) => {
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

/** The newest modification time under `dir` (files only), 0 when it does not exist. */
function newest(dir) {
  if (!existsSync(dir)) return 0;
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) t = Math.max(t, statSync(join(e.parentPath ?? e.path, e.name)).mtimeMs);
  return t;
}
const builtAt = (file) => (existsSync(file) ? statSync(file).mtimeMs : -1);

/** Build the CLI and the renderer when their sources are newer than the build (a fresh clone builds once). */
function buildForBrowser() {
  const engine = newest('engine');
  if (builtAt('dist/engine/cli/main.js') < engine) run('npm', ['run', '--silent', 'build:cli']);
  if (builtAt('dist/renderer/index.html') < Math.max(engine, newest('renderer/src'), builtAt('renderer/index.html')))
    run('npm', ['run', '--silent', 'build:renderer']);
}

function openInBrowser(url) {
  if (!hasDisplay) return;
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
  child.on('error', () => console.log(`(could not start ${opener}: open the URL yourself)`));
  child.unref();
}

function browserMode(reason) {
  console.log(`Electron cannot run here (${reason}): starting the app in your browser instead.`);
  buildForBrowser();
  const serve = spawn(
    process.execPath,
    ['bin/qcow2-doctor.cjs', 'serve', '--root', 'resources/samples', ...serveArgs],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  let opened = false;
  serve.stdout.on('data', (d) => {
    process.stdout.write(d);
    out += d.toString();
    const m = /(http:\/\/\S+\?token=\S+)/.exec(out);
    if (m && !opened) {
      opened = true;
      openInBrowser(m[1]);
    }
  });
  // Live reload in browser mode: the renderer is rebuilt on every change; reload the page to see it.
  const watcher =
    mode === 'dev'
      ? spawn('npx', ['vite', 'build', '--watch', '--config', 'renderer/vite.config.ts'], { stdio: 'inherit' })
      : null;
  const stop = () => {
    watcher?.kill('SIGTERM');
    serve.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  serve.on('exit', (code) => {
    watcher?.kill('SIGTERM');
    process.exit(code ?? 0);
  });
}

const blocker = electronBlocker();
if (blocker) browserMode(blocker);
else if (mode === 'dev') run('npx', ['electron-vite', 'dev']);
else if (mode === 'preview') run('npx', ['electron-vite', 'preview']);
else {
  run('npx', ['electron-vite', 'build']);
  run('npx', ['electron', '.']);
}
