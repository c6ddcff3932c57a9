#!/usr/bin/env -S NODE_EXTRA_CA_CERTS= node
// The launcher empties NODE_EXTRA_CA_CERTS: Node 20 parses that whole certificate bundle before any
// script runs (30 ms of a 48 ms start where it is set machine-wide), and this CLI never opens a TLS
// connection. (`env -S`: GNU coreutils 8.30+, macOS; started as `node bin/qcow2-doctor.js`, it is a no-op.)
// Entry point of the `qcow2-doctor` CLI. `npm run build:cli` (run by `npm install` through `prepare`)
// compiles the engine to dist/engine/ and bundles the CLI from it into dist/cli/ (faster to start).
// A bundle older than the compiled modules (tsc run alone) is stale: the modules are used instead.
import { statSync } from 'node:fs';

const mtime = (rel) => statSync(new URL(rel, import.meta.url), { throwIfNoEntry: false })?.mtimeMs ?? -1;
const bundled = mtime('../dist/cli/main.js') >= mtime('../dist/engine/cli/main.js');
import(bundled ? '../dist/cli/main.js' : '../dist/engine/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`qcow2-doctor: ${err && err.message ? err.message : String(err)}\n`);
  process.exit(1);
});
