// `npm run fuzz -- --time S [--target NAME] [--seed N] [--jobs J] [--out DIR] [--hang-ms MS] [--heap-mb MB]`: the long,
// coverage-steered, structure-aware fuzz run (test/fuzz/structured/). Compiles the harness with
// tsc (module paths kept, so coverage sees the engine's files), then runs each target for S
// seconds in a child process with a bounded heap. A child that dies (a crash the harness could not
// catch, a hang the watchdog killed, the heap limit) is recorded with the case it was running and
// restarted with the next seed for the time left. Corpus and findings stay in DIR (.tmp/fuzz), one
// file per cause (a bug reached by thousands of cases is one file with a count). A child's output is
// never trusted to be small or well-formed: only its tail is kept, and a summary that does not parse
// is reported as such.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
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
/** Bytes of a child's stdout kept (its summary is the last line, a few KiB). */
const OUTPUT_TAIL = 1 << 20;
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
  const summary = { target, runs: [], deaths: [], unreadable: 0 };
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
    child.stdout.on('data', (d) => (stdout = (stdout + d).slice(-OUTPUT_TAIL)));
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const { code, signal } = await new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
    if (code === 0) {
      const run = lastSummary(stdout);
      if (run) {
        summary.runs.push(run);
        console.log(JSON.stringify(run));
      } else {
        summary.unreadable++;
        console.log(`${target}: seed ${seed} ended without a readable summary (${stdout.length} bytes of output kept)`);
      }
      continue;
    }
    const current = join(out, `current-${target}.json`);
    const marker = join(out, `watchdog-${target}`);
    const hang = existsSync(marker);
    if (hang) rmSync(marker);
    const kind = hang ? 'hang' : /heap out of memory|Allocation failed/i.test(stderr) ? 'memory' : 'crash';
    const cause = `${kind} | ${errorLine(stderr)}`;
    const death = {
      target,
      kind,
      cause,
      seed,
      exit: signal ?? code,
      case: readJson(current),
      stderr: stderr.slice(-2000),
    };
    mkdirSync(join(out, 'findings'), { recursive: true });
    const file = join(
      out,
      'findings',
      `${target}-died-${createHash('sha256').update(cause).digest('hex').slice(0, 12)}.json`,
    );
    const earlier = readJson(file);
    const count = (Number.isSafeInteger(earlier?.count) ? earlier.count : 0) + 1;
    writeFileSync(file, JSON.stringify(earlier ? { ...earlier, count } : { ...death, count }, null, 1));
    if (!summary.deaths.some((d) => d.cause === cause)) summary.deaths.push(death);
    console.log(`${target}: child died (${kind}, ${death.exit}); case saved; restarting with seed ${seed + 1}`);
  }
  return summary;
}

/** The last line of a child's output that is its summary (an object with a case count), or undefined. */
function lastSummary(stdout) {
  for (const line of stdout.trim().split('\n').reverse()) {
    try {
      const v = JSON.parse(line);
      if (v && typeof v === 'object' && Number.isSafeInteger(v.cases) && Array.isArray(v.findings)) return v;
    } catch {}
  }
  return undefined;
}

/** A JSON file's value, or undefined when it is missing or does not parse. */
function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The line of a dead child's stderr that names the error, numbers blanked (its cause). */
function errorLine(stderr) {
  const line = stderr.split('\n').find((l) => /error|fatal|abort/i.test(l)) ?? '';
  return line
    .replace(/0x[0-9a-f]+|\d+/gi, 'N')
    .trim()
    .slice(0, 200);
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
  const findings = [...new Set(r.runs.flatMap((x) => x.findings.map(String)))];
  found += findings.length + r.deaths.length + r.unreadable;
  const corpus = r.runs.at(-1)?.corpus ?? 0;
  const features = r.runs.at(-1)?.features ?? 0;
  const held = r.runs.flatMap((x) => (Array.isArray(x.held) ? x.held : []));
  const memory = held.length ? `, held after GC ${held[0]}..${Math.max(...held)} MiB (last ${held.at(-1)})` : '';
  const deaths = r.deaths.map((d) => `died: ${d.cause}`);
  console.log(
    `${r.target}: ${cases} cases, corpus ${corpus}, ${features} features${memory}, ${findings.length} findings, ${r.deaths.length} deaths, ${r.unreadable} unreadable summaries${[...findings, ...deaths].map((x) => `\n  ${x}`).join('')}`,
  );
}
console.log(
  `findings kept in ${relative(root, join(out, 'findings'))} (${existsSync(join(out, 'findings')) ? readdirSync(join(out, 'findings')).length : 0} files)`,
);
process.exit(found > 0 ? 1 : 0);
