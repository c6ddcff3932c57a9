#!/usr/bin/env node
// Entry point of the `qcow2-doctor` CLI: the engine is compiled to dist/ by `npm run build:cli`
// (run automatically by `npm install` through `prepare`).
import('../dist/engine/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`qcow2-doctor: ${err && err.message ? err.message : String(err)}\n`);
  process.exit(1);
});
