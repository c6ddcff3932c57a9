// `npm run fuzz -- --time S [--target NAME] [--seed N] [--jobs J] [--out DIR] [--hang-ms MS] [--heap-mb MB]`: the long,
// coverage-steered, structure-aware fuzz run (test/fuzz/structured/). Compiles the harness with
// tsc (module paths kept, so coverage sees the engine's files), then runs each target for S
// seconds in a child process with a bounded heap. A child that dies (a crash the harness could not
// catch, a hang the watchdog killed, the heap limit) is recorded with the case it was running and
// restarted with the next seed for the time left. Corpus and findings stay in DIR (.tmp/fuzz).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TARGETS = ['info', 'check', 'repair-plan', 'salvage-scan', 'contract'];
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const time = Number(opt('time', '60'));
const only = opt('target');
const seed0 = Number(opt('seed', '1'));
const jobs = Math.max(1, Number(opt('jobs', '1')));
const out = join(root, opt('out', '.tmp/fuzz'));
const heapMb = Number(opt('heap-mb', '2048'));
// A case past this is a hang (the largest tables QEMU allows take seconds to walk, more under load).
const hangMs = opt('hang-ms', '60000');
if (!Number.isFinite(time) || time <= 0) throw new Error(`--time must be a number of seconds (got ${opt('time')})`);
if (only && !TARGETS.includes(only)) throw new Error(`--target must be one of ${TARGETS.join(', ')} (got ${only})`);

// Compile the harness and the engine it drives, keeping paths (coverage filters on /engine/).
mkdirSync(out, { recursive: true });
const tsconfig = join(out, 'tsconfig.json');
writeFileSync(
  tsconfig,
  JSON.stringify({
    extends: relative(out, join(root, 'tsconfig.base.json')),
    compilerOptions: {
      outDir: 'build',
      rootDir: relative(out, root),
      lib: ['ES2023'],
      types: ['node'],
      sourceMap: false,
    },
    files: [relative(out, join(root, 'test/fuzz/structured/main.ts'))],
  }),
);
const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', tsconfig], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(1);
const main = join(out, 'build/test/fuzz/structured/main.js');

/** Run one target for `seconds`, restarting after a dead child; resolves to its summary. */
async function runTarget(target) {
  const deadline = Date.now() + time * 1000;
  const summary = { target, runs: [], deaths: [] };
  for (let seed = seed0; Date.now() < deadline - 2000; seed++) {
    const left = Math.round((deadline - Date.now()) / 1000);
    const child = spawn(
      process.execPath,
      [
        `--max-old-space-size=${heapMb}`,
        main,
        '--target',
        target,
        '--time',
        String(left),
        '--seed',
        String(seed),
        '--out',
        out,
        '--hang-ms',
        hangMs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const { code, signal } = await new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
    if (code === 0) {
      const line = stdout.trim().split('\n').pop();
      summary.runs.push(JSON.parse(line));
      console.log(line);
      continue;
    }
    const current = join(out, `current-${target}.json`);
    const marker = join(out, `watchdog-${target}`);
    const hang = existsSync(marker);
    if (hang) rmSync(marker);
    const kind = hang ? 'hang' : /heap out of memory|Allocation failed/i.test(stderr) ? 'memory' : 'crash';
    const death = {
      target,
      kind,
      seed,
      exit: signal ?? code,
      case: existsSync(current) ? JSON.parse(readFileSync(current, 'utf8')) : undefined,
      stderr: stderr.slice(-2000),
    };
    mkdirSync(join(out, 'findings'), { recursive: true });
    writeFileSync(join(out, 'findings', `${target}-${seed}-died.json`), JSON.stringify(death, null, 1));
    summary.deaths.push(death);
    console.log(`${target}: child died (${kind}, ${death.exit}); case saved; restarting with seed ${seed + 1}`);
  }
  return summary;
}

const queue = TARGETS.filter((t) => !only || t === only);
const results = [];
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    while (queue.length > 0) results.push(await runTarget(queue.shift()));
  }),
);
let found = 0;
console.log('\nsummary');
for (const r of results) {
  const cases = r.runs.reduce((n, x) => n + x.cases, 0);
  const findings = [...new Set(r.runs.flatMap((x) => x.findings))];
  found += findings.length + r.deaths.length;
  const corpus = r.runs.at(-1)?.corpus ?? 0;
  const features = r.runs.at(-1)?.features ?? 0;
  console.log(
    `${r.target}: ${cases} cases, corpus ${corpus}, ${features} features, ${findings.length} findings, ${r.deaths.length} deaths${findings.length ? `\n  ${findings.join('\n  ')}` : ''}`,
  );
}
console.log(
  `findings kept in ${relative(root, join(out, 'findings'))} (${existsSync(join(out, 'findings')) ? readdirSync(join(out, 'findings')).length : 0} files)`,
);
process.exit(found > 0 ? 1 : 0);
