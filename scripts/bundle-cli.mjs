// Bundle the compiled CLI (dist/engine/cli/main.js, from tsc) into dist/cli/: one chunk per command,
// loaded lazily as before, with commander and the engine modules each command needs merged into a
// few files. Start-up is what a short command pays for most: resolving and compiling ~60 separate
// modules (commander through Node's CommonJS interop) costs about as much as checking a small image.
// The two worker scripts are entries of their own, next to the chunks that start them.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'cli');
rmSync(out, { recursive: true, force: true });
await build({
  input: {
    main: join(root, 'dist/engine/cli/main.js'),
    // Started by `new URL('./check-worker.js' | './worker.js', import.meta.url)` from their chunks.
    'check-worker': join(root, 'dist/engine/check/check-worker.js'),
    worker: join(root, 'dist/engine/triage/worker.js'),
  },
  platform: 'node',
  // ws loads these native speed-ups if installed; without them it falls back to JavaScript.
  external: ['bufferutil', 'utf-8-validate'],
  logLevel: 'warn',
  output: { dir: out, format: 'esm', entryFileNames: '[name].js', chunkFileNames: '[name]-[hash].js' },
});
