#!/usr/bin/env -S NODE_EXTRA_CA_CERTS= node
// Entry point of the `qcow2-doctor` CLI. Start-up matters (scripts and triage loops run it per
// image), hence four things:
// - it is CommonJS: Node's ES module loader alone costs ~5 ms to start;
// - `npm run build:cli` (run by `npm install` through `prepare`) bundles the CLI into one file,
//   dist/cli/qcow2-doctor.cjs, and V8's code cache for it; this file compiles the bundle from
//   that cache. A bundle older than the compiled modules (tsc run alone) is stale: the modules in
//   dist/engine/ are used instead, as they are without a bundle;
// - the launcher empties NODE_EXTRA_CA_CERTS: Node 20 parses that whole certificate bundle before
//   any script runs (30 ms where it is set machine-wide), and the CLI never opens a TLS connection.
//   (`env -S`: GNU coreutils 8.30+, macOS; started as `node bin/qcow2-doctor.cjs`, it is a no-op.)
// - a finished command exits at once (see leaveWhenDone).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const bundle = path.join(dist, 'cli', 'qcow2-doctor.cjs');
const cacheFile = `${bundle}.cache`;
const mtime = (f) => fs.statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? -1;

function fail(err) {
  process.stderr.write(`qcow2-doctor: ${err?.message ? err.message : String(err)}\n`);
  process.exit(1);
}

/** The bundle, compiled from the code cache when V8 accepts it. */
function loadBundle() {
  const vm = require('node:vm');
  const Module = require('node:module');
  const cachedData = fs.existsSync(cacheFile) ? fs.readFileSync(cacheFile) : undefined;
  const script = new vm.Script(Module.wrap(fs.readFileSync(bundle, 'utf8')), {
    filename: bundle,
    cachedData,
  });
  const mod = { exports: {} };
  script
    .runInThisContext()
    .call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, path.dirname(bundle));
  return { main: mod.exports.main, script };
}

/** Build-time warm-up: run the given commands, then save what V8 compiled as the code cache. */
async function warmCodeCache(main, script, runs) {
  for (const args of runs) await main([process.argv[0], __filename, ...args]);
  fs.writeFileSync(cacheFile, script.createCachedData());
  process.exitCode = 0;
}

/**
 * A finished command leaves at once: with stdout or stderr on a pipe, Node's own exit lingers on
 * their handles for ~5 ms. Only when nothing but standard streams remains (not `serve`) and all
 * output has been written.
 */
function leaveWhenDone() {
  const onlyStdio = process.getActiveResourcesInfo().every((r) => r === 'PipeWrap' || r === 'TTYWrap');
  if (onlyStdio && process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit();
}

if (mtime(bundle) >= mtime(path.join(dist, 'engine', 'cli', 'main.js'))) {
  const { main, script } = loadBundle();
  const warm = process.env.QCOW2_DOCTOR_WARM_CODE_CACHE;
  (warm ? warmCodeCache(main, script, JSON.parse(warm)) : main(process.argv).then(leaveWhenDone)).catch(fail);
} else {
  import('../dist/engine/cli/main.js')
    .then((m) => m.main(process.argv))
    .then(leaveWhenDone)
    .catch(fail);
}
