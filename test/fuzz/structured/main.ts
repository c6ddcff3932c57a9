// The long fuzz run of one target (scripts/fuzz.mjs bundles this and runs it in a child process):
// `main.mjs --target NAME --time S --seed N --out DIR`. The corpus is kept in DIR/corpus/NAME.json
// between runs; findings go to DIR/findings/NAME-*.json. A watchdog thread kills the process when a
// case runs past the hang limit (a synchronous loop cannot be stopped from inside), after the case
// was saved to DIR/current-NAME.json, and leaves DIR/watchdog-NAME behind, so the parent records it
// as a hang (a message on stderr would never be written: the main thread is the one stuck).
// One file per cause (kind, message without numbers, first engine frame): a later run that reaches
// the same cause adds to its count instead of writing another file.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { startCoverage } from './coverage.js';
import { fuzz, type FuzzCase } from './runner.js';
import { makeSeeds } from './seeds.js';
import { TARGETS, type TargetName } from './targets.js';

const UNSAVEABLE = '{"unsaveable":"nested too deep for JSON.stringify"}';

const arg = (name: string, dflt?: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
};

const target = arg('target') as TargetName;
if (!TARGETS.includes(target)) throw new Error(`--target must be one of ${TARGETS.join(', ')} (got ${target})`);
const timeMs = Number(arg('time')) * 1000;
const seed = Number(arg('seed', '1'));
const out = arg('out');
const hangMs = Number(arg('hang-ms', '30000'));

await startCoverage();
mkdirSync(join(out, 'corpus'), { recursive: true });
mkdirSync(join(out, 'findings'), { recursive: true });
const corpusFile = join(out, 'corpus', `${target}.json`);
const currentFile = join(out, `current-${target}.json`);
const corpus: FuzzCase[] = existsSync(corpusFile) ? JSON.parse(readFileSync(corpusFile, 'utf8'), revive) : [];
const seeds = makeSeeds(join(out, 'seeds', String(process.pid)));

// Watchdog: the main thread stamps the start of each case; the watchdog kills the process past the limit.
const stamp = new Int32Array(new SharedArrayBuffer(8));
const started = Date.now();
new Worker(
  `const { workerData } = require('node:worker_threads');
   const s = workerData.stamp;
   setInterval(() => {
     const at = Atomics.load(s, 0);
     if (at > 0 && Date.now() - workerData.started - at * 10 > workerData.hangMs) {
       require('node:fs').writeFileSync(workerData.marker, 'watchdog: case running past ' + workerData.hangMs + ' ms');
       process.kill(process.pid, 'SIGKILL');
     }
   }, 250);`,
  { eval: true, workerData: { stamp, started, hangMs, marker: join(out, `watchdog-${target}`) } },
).unref();

const stats = await fuzz({
  target,
  seeds,
  seed,
  timeMs,
  caseTimeMs: hangMs,
  memoryLimit: 1536 * 1024 * 1024,
  corpus,
  beforeCase: (c) => {
    writeFileSync(currentFile, saveable(c));
    Atomics.store(stamp, 0, Math.max(1, Math.floor((Date.now() - started) / 10)));
  },
  afterCase: () => Atomics.store(stamp, 0, 0),
});
writeFileSync(
  corpusFile,
  `[${stats.corpus
    .map(saveable)
    .filter((x) => x !== UNSAVEABLE)
    .join(',')}]`,
);
for (const f of stats.findings) {
  const file = join(
    out,
    'findings',
    `${target}-${createHash('sha256').update(f.cause).digest('hex').slice(0, 12)}.json`,
  );
  writeFileSync(file, saveable({ ...f, count: f.count + countIn(file) }));
}
console.log(
  JSON.stringify({
    target,
    seed,
    cases: stats.cases,
    accepted: stats.accepted,
    refused: stats.refused,
    corpus: stats.corpus.length,
    features: stats.features,
    // Causes, not cases: the line stays short however many cases a bug is reached by.
    findings: stats.findings.slice(0, 20).map((f) => `${f.cause} (${f.count} cases)`),
    held: stats.held.map((h) => h.mib),
    ms: stats.ms,
    coverageMs: stats.coverageMs,
    slowest: stats.slowest,
  }),
);
process.exit(0);

/** A case or finding as JSON; a request nested thousands deep cannot be, and is named as such. */
function saveable(v: unknown): string {
  try {
    return JSON.stringify(v, replace);
  } catch {
    return UNSAVEABLE;
  }
}

/** Cases an earlier run counted under a finding file (0 when there is none or it does not parse). */
function countIn(file: string): number {
  try {
    const n = (JSON.parse(readFileSync(file, 'utf8')) as { count?: unknown }).count;
    return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** Typed arrays (contract frames) as JSON and back. */
function replace(_k: string, v: unknown): unknown {
  return v instanceof Uint8Array ? { $u8: Buffer.from(v).toString('base64') } : v;
}
function revive(_k: string, v: unknown): unknown {
  return v && typeof v === 'object' && typeof (v as { $u8?: unknown }).$u8 === 'string'
    ? new Uint8Array(Buffer.from((v as { $u8: string }).$u8, 'base64'))
    : v;
}
