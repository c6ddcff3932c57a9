import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installRejectionGuard } from '../../service/process-guard.js';
import { startServer } from '../../service/ws-server.js';

/** The package root: the nearest folder above this module holding package.json. */
function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve the app in a browser: the UI and the engine over a WebSocket, for images under --root')
    .requiredOption('--root <dir>', 'only files under this folder can be opened')
    .option('--port <n>', 'TCP port (0 picks a free one)', '8417')
    .option('--host <addr>', 'address to bind', '127.0.0.1')
    .action(async (o: { root: string; port: string; host: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new Error(`--port must be 0..65535 (got ${o.port})`);
      const pkg = packageRoot();
      const staticDir = join(pkg, 'dist', 'renderer');
      if (!existsSync(join(staticDir, 'index.html')))
        throw new Error(`the renderer is not built (${staticDir}): run npm run build:renderer`);
      installRejectionGuard();
      const delay = Number(process.env.QCOW2_DOCTOR_TEST_CHECK_DELAY_MS ?? 0);
      const server = await startServer({
        root: o.root,
        port,
        host: o.host,
        staticDir,
        samplesDir: join(pkg, 'resources', 'samples'),
        ...(delay > 0 ? { testCheckDelayMs: delay } : {}),
      });
      process.stdout.write(`qcow2-doctor serving ${o.root} at ${server.url}\n`);
      if (o.host !== '127.0.0.1' && o.host !== 'localhost' && o.host !== '::1')
        process.stderr.write(
          'warning: listening beyond this machine; anyone with the URL (token) can read images under --root\n',
        );
      await new Promise<void>((done) => {
        const stop = (): void => void server.close().then(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
