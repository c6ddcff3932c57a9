// Builds the Svelte renderer into dist/renderer/ (served by `qcow2-doctor serve` and loaded by Electron).
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  plugins: [svelte({ configFile: resolve(here, 'svelte.config.js') })],
  build: {
    outDir: resolve(here, '../dist/renderer'),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
  logLevel: 'warn',
});
