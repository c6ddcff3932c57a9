// The differential campaign: seeded damage to real QEMU images with known guest content, judged
// against the ground truth and against `qemu-img check -r all` (see judge.ts for the verdicts).
// Exit 1 when any case loses bytes QEMU keeps or makes a false claim; the failing cases are printed
// (and written to --keep DIR with their damage, to become named regression tests).
//
// This process builds the bases, then hands out case numbers to --jobs worker processes
// (worker.ts), each of which makes its cases from the seed and judges them with our CLI run
// in-process. A case whose worker crashes or hangs is judged again with a process per command.
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBases } from './bases.js';
import type { CaseResult } from './judge.js';
import { appendOut, readOut } from './out-file.js';
import { prng } from './prng.js';
import type { BaseManifest, ToWorker } from './protocol.js';
import { CampaignWorker, type Outcome } from './workers.js';

export interface CampaignOptions {
  budget: number;
  seed: number;
  cases: number;
  jobs: number;
  keep?: string;
  json: boolean;
  /** Only the base configurations whose names contain one of these (all when empty). */
  bases: string[];
  /** Append each case's verdict to this file as a JSON line; resume from what it already holds. */
  out?: string;
  /** Log a line every this many cases (never when 0 or absent). */
  progress?: number;
  /** Judge only these case numbers (a seed and number always name the same image). */
  only?: number[];
}

export function parseArgs(argv: string[]): CampaignOptions {
  const o: CampaignOptions = {
    budget: 60,
    seed: 1,
    cases: Number.POSITIVE_INFINITY,
    jobs: 2,
    json: false,
    bases: [],
    progress: 100,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (v: string): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${a}: not a non-negative number: '${v}'`);
      return n;
    };
    if (a === '--budget') o.budget = num(next());
    else if (a === '--seed') o.seed = Math.floor(num(next()));
    else if (a === '--cases') o.cases = Math.floor(num(next()));
    else if (a === '--jobs') o.jobs = Math.max(1, Math.floor(num(next())));
    else if (a === '--keep') o.keep = next();
    else if (a === '--json') o.json = true;
    else if (a === '--bases') o.bases = next().split(',').filter(Boolean);
    else if (a === '--out') o.out = next();
    else if (a === '--progress') o.progress = Math.floor(num(next()));
    else if (a === '--only')
      o.only = next()
        .split(',')
        .filter(Boolean)
        .map((v) => Math.floor(num(v)));
    else throw new Error(`unknown option '${a}'`);
  }
  return o;
}

/** A memory file system with room for the raw readings (2 × 128 MiB, sparse, per job), if any. */
function memoryRoot(): string | undefined {
  try {
    const s = statfsSync('/dev/shm');
    if (s.bavail * s.bsize >= 2 ** 30) return '/dev/shm';
  } catch {
    // none here
  }
  return undefined;
}

/** Limits on one case: in-process it takes seconds; the spawned runner bounds each of its commands. */
const IN_PROCESS_LIMIT_MS = 600_000;
const SPAWNED_LIMIT_MS = 1_800_000;
/** A worker that has grown past this is replaced (its forks of qemu-img get slower as it grows). */
const RECYCLE_RSS = 768 << 20;

/** A case no worker could judge: it counts as a false claim, so the run cannot pass over it. */
function unjudged(index: number, o: Extract<Outcome, { died: string }>): CaseResult {
  return {
    index,
    base: o.started?.base ?? '?',
    kind: o.started?.kind ?? '?',
    what: o.started?.what ?? '?',
    qemuKeptBytes: 0,
    oursKeptBytes: 0,
    lostVsQemu: 0,
    falseClaims: [`the case could not be judged: ${o.died}`],
    refused: false,
    undetectable: false,
    exits: { check: -1, leaks: -1, all: -1, salvage: -1, qemuCheck: -1, qemuRepair: -1 },
    notes: [],
  };
}

function progressLine(results: CaseResult[], fresh: number, started: number): string {
  const min = (Date.now() - started) / 60_000;
  const lost = results.filter((r) => r.lostVsQemu > 0).length;
  const claims = results.filter((r) => r.falseClaims.length > 0).length;
  return `${results.length} cases (${(fresh / Math.max(min, 1e-9)).toFixed(1)}/min): ${lost} lose bytes qemu-img keeps, ${claims} make a false claim`;
}

/** Judge cases until the budget, --cases or `signal` ends the run; the verdicts of every case judged. */
export async function runCampaign(
  o: CampaignOptions,
  log: (line: string) => void,
  signal?: AbortSignal,
): Promise<CaseResult[]> {
  // Images on a disk file system, not in memory (/dev/shm): QEMU's repair of a refcount table that
  // points past 16 TiB gets "File too large" from ext4 and goes on, but "Cannot allocate memory" on
  // tmpfs, and stops. QEMU's raw readings of them go to memory when there is room.
  const dir = mkdtempSync(join(tmpdir(), 'q2d-campaign-'));
  const readsDir = mkdtempSync(join(memoryRoot() ?? tmpdir(), 'q2d-campaign-reads-'));
  const workers = new Set<CampaignWorker>();
  const stop = (): void => {
    for (const w of workers) w.kill();
  };
  signal?.addEventListener('abort', stop);
  try {
    const bases = await makeBases(dir, prng(o.seed), o.bases);
    log(`${bases.length} base images (${bases.map((b) => b.name).join(', ')}), seed ${o.seed}`);
    const manifest: BaseManifest[] = bases.map(({ truth: _t, ...m }) => m);
    const results = o.out ? readOut(o.out, o.seed, o.bases) : [];
    const done = new Set(results.map((r) => r.index));
    if (results.length > 0) log(`${results.length} cases already judged in ${o.out}`);
    // The budget counts cases only: building the bases takes the same few seconds on every run.
    const started = Date.now();
    const deadline = started + o.budget * 1000;
    let next = 0;
    let fresh = 0;
    const only = o.only ? [...new Set(o.only)].filter((i) => !done.has(i)).sort((a, b) => a - b) : undefined;
    const take = (): number | undefined => {
      if (only) return signal?.aborted || Date.now() >= deadline ? undefined : only.shift();
      while (done.has(next)) next++;
      if (signal?.aborted || Date.now() >= deadline || next >= o.cases) return undefined;
      return next++;
    };
    const record = (r: CaseResult): void => {
      results.push(r);
      fresh++;
      if (o.out) appendOut(o.out, o.seed, o.bases, r);
      if (o.progress && fresh % o.progress === 0) log(progressLine(results, fresh, started));
    };
    const init = (w: number): ToWorker & { type: 'init' } => ({
      type: 'init',
      seed: o.seed,
      bases: manifest,
      // Case files sit beside the bases, so a relative backing name still resolves.
      scratch: { images: join(dir, `case-${w}`), reads: join(readsDir, `case-${w}`) },
      keep: o.keep,
    });
    const job = async (w: number): Promise<void> => {
      let worker: CampaignWorker | undefined;
      const startWorker = async (): Promise<CampaignWorker> => {
        worker = await CampaignWorker.start(init(w));
        workers.add(worker);
        if (signal?.aborted) worker.kill();
        return worker;
      };
      const drop = (): void => {
        if (worker) workers.delete(worker);
        worker?.close();
        worker = undefined;
      };
      try {
        for (let i = take(); i !== undefined; i = take()) {
          let out = await (worker ?? (await startWorker())).run(i, true, IN_PROCESS_LIMIT_MS);
          if ('died' in out && !signal?.aborted) {
            drop();
            out = await (await startWorker()).run(i, false, SPAWNED_LIMIT_MS);
          }
          if (signal?.aborted) break;
          if ('died' in out) drop();
          record('died' in out ? unjudged(i, out) : out.result);
          if (worker && worker.rss > RECYCLE_RSS) drop();
        }
      } finally {
        drop();
      }
    };
    await Promise.all(Array.from({ length: o.jobs }, (_, w) => job(w)));
    return results;
  } finally {
    signal?.removeEventListener('abort', stop);
    stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(readsDir, { recursive: true, force: true });
  }
}
