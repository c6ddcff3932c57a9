// Bundle the compiled CLI (dist/engine/cli/main.js, from tsc) into dist/cli/qcow2-doctor.cjs, one
// CommonJS file with commander inside, plus the worker script triage starts next to it; then warm
// V8's code cache for it. Start-up is what a short command pays for most: resolving, loading and
// compiling ~60 ES modules costs about as much as checking a small image, and CommonJS loaded from
// a code cache skips the ES module loader and nearly all compiling (bin/qcow2-doctor.cjs loads it).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'cli');
rmSync(out, { recursive: true, force: true });
// ws loads these native speed-ups if installed; without them it falls back to JavaScript.
const external = ['bufferutil', 'utf-8-validate'];
await build({
  input: { 'qcow2-doctor': join(root, 'dist/engine/cli/main.js') },
  platform: 'node',
  external,
  logLevel: 'warn',
  output: { dir: out, format: 'cjs', entryFileNames: '[name].cjs', codeSplitting: false },
});
// Builtins that only some commands need are loaded on first use: the bundle requires every
// module's imports up front, and loading child_process, worker_threads, http, zlib and
// fs/promises costs a plain check ~4 ms. Each is used only as `name.member`, which the proxy serves.
const bundleFile = join(out, 'qcow2-doctor.cjs');
let code = readFileSync(bundleFile, 'utf8');
for (const id of [
  'node:child_process',
  'node:worker_threads',
  'node:http',
  'node:os',
  'node:zlib',
  'node:fs/promises',
  'node:crypto',
]) {
  // Top-level imports (`let x = require(...)`) and commander's own (`const childProcess = ...` inside
  // its module wrapper: child_process alone pulls in streams, net and dgram, ~40 modules).
  for (const decl of code.matchAll(new RegExp(`^(\\s*)(let|const) (\\w+) = require\\("${id}"\\);$`, 'gm'))) {
    const [line, indent, kind, name] = decl;
    const uses = code.match(new RegExp(`\\b${name}\\b(?!\\.)`, 'g')) ?? [];
    if (uses.length !== 1)
      throw new Error(`${name} (${id}) is used other than as ${name}.member: cannot be loaded lazily`);
    code = code.replace(line, `${indent}${kind} ${name} = lazyBuiltin("${id}");`);
  }
}
// The global \`performance\` loads perf_hooks and a dozen internal modules on first touch; the CLI only
// measures intervals with performance.now(), which a monotonic clock serves as well.
const perfUses = code.match(/\bperformance\b(?!\.now\(\))/g) ?? [];
if (perfUses.length) throw new Error('the bundle uses performance other than as performance.now()');
code = `const performance = { now: () => Number(process.hrtime.bigint()) / 1e6 };\n${code}`;
// Pure ASCII: a one-byte source string that the launcher reads without decoding (a single non-ASCII
// character makes V8 hold the whole megabyte as a two-byte string, several ms at every start).
// Every character outside ASCII sits in a comment, a string or a template, where \uXXXX means the same,
// except in a String.raw template, which must stay ASCII.
for (const m of code.matchAll(/String\.raw`[^`]*`/g))
  if (/[\u0080-\uffff]/.test(m[0])) throw new Error(`a String.raw template holds non-ASCII text: ${m[0].slice(0, 60)}`);
code = code.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
code += `
function lazyBuiltin(id) {
\tlet mod;
\treturn new Proxy({}, { get: (_, key) => (mod ??= require(id))[key] });
}
`;
writeFileSync(bundleFile, code);

// The launcher compiles the bundle with vm.Script, where import() has no loader: builtins and
// packages must be imported statically (or be inlined, as rolldown does with packages).
const dynamic = /(?<!{\s*)\bimport\(\s*["'`]/.exec(code);
if (dynamic)
  throw new Error(
    `dist/cli/qcow2-doctor.cjs has a dynamic import() the launcher cannot serve: ${dynamic.input.slice(dynamic.index, dynamic.index + 60)}`,
  );
// Started by `new URL('./worker.js' | './check-worker.js', import.meta.url)` from the bundle.
for (const [name, src] of [
  ['worker', 'dist/engine/triage/worker.js'],
  ['check-worker', 'dist/engine/check/check-worker.js'],
  ['history-judge-worker', 'dist/engine/service/history/judge-worker.js'],
]) {
  await build({
    input: { [name]: join(root, src) },
    platform: 'node',
    external,
    logLevel: 'warn',
    output: { dir: out, format: 'esm', entryFileNames: '[name].js', codeSplitting: false },
  });
}

// The code cache: the launcher records what V8 compiled while it checks the sample images and
// reads their header. A cache V8 does not accept (another Node) is ignored at start-up.
const launcher = join(root, 'bin', 'qcow2-doctor.cjs');
const samples = join(root, 'resources', 'samples');
const warm = [
  ['check', join(samples, 'sample-damaged.qcow2')],
  ['check', '--output=json', join(samples, 'sample-snapshots.qcow2')],
  ['info', join(samples, 'sample-snapshots.qcow2')],
].filter((args) => existsSync(args[args.length - 1]));
const r = spawnSync(process.execPath, [launcher], {
  env: { ...process.env, QCOW2_DOCTOR_WARM_CODE_CACHE: JSON.stringify(warm) },
  stdio: ['ignore', 'ignore', 'pipe'],
});
// Without a cache the CLI still works, only starts slower: a failed warm-up must not fail the install.
if (r.status !== 0) {
  rmSync(join(out, 'qcow2-doctor.cjs.cache'), { force: true });
  process.stderr.write(
    `bundle-cli: warming the CLI's code cache failed (exit ${r.status}); the CLI starts without it\n${r.stderr}\n`,
  );
}
