// `npm run build:app` / `npm start`: main (+ engine host), preload (CommonJS: the window is
// sandboxed) and renderer, into out/. The Electron binary is not needed to build.
import { defineConfig } from 'electron-vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { resolve } from 'node:path';

export default defineConfig({
  main: {
    build: {
      outDir: 'out/main',
      rollupOptions: {
        // check-worker: the check runs in a worker thread beside the engine host (worker-client.ts).
        input: {
          index: resolve('electron/main.ts'),
          'engine-host': resolve('electron/engine-host.ts'),
          'check-worker': resolve('engine/check/check-worker.ts'),
        },
      },
    },
  },
  preload: {
    build: {
      outDir: 'out/preload',
      rollupOptions: {
        input: { preload: resolve('electron/preload.ts') },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    root: 'renderer',
    base: './',
    plugins: [svelte({ configFile: resolve('renderer/svelte.config.js') })],
    build: {
      outDir: 'out/renderer',
      target: 'es2022',
      rollupOptions: { input: { index: resolve('renderer/index.html') } },
    },
  },
});
