// The coverage-steered loop: fast-check generates cases (fresh mutations of a seed, or more
// mutations on top of a corpus entry), each runs under a watchdog, and a case that makes the engine
// run code no earlier case ran joins the corpus. Oracles: only expected errors, bounded time per
// case, bounded memory. Deterministic for a given seed, seed images and case count.
// Between cases the loop yields to the event loop: on in-memory files a case is all microtasks, and
// V8 releases freed ArrayBuffer memory in tasks that only run when the loop turns. Memory is judged
// after a full GC (garbage and unreleased buffers are not a leak), and one cause is one finding.
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { contractCaseArb } from './contract-cases.js';
import { CoverageMap } from './coverage.js';
import { applyAll, type Mutation, mutationsArb } from './mutations.js';
import type { Seed } from './seeds.js';
import { type ContractCase, contract, IMAGE_RUNNERS, isExpectedError, type TargetName } from './targets.js';

/** A replayable case: a seed and mutations, or one contract request. */
export type FuzzCase = { seed: string; mutations: Mutation[] } | { contract: ContractCase };

export interface Finding {
  target: TargetName;
  kind: 'crash' | 'hang' | 'memory';
  message: string;
  /** What the finding is keyed by (kind, first line without numbers, first engine frame). */
  cause: string;
  /** Cases that ended in this cause (only the first is kept). */
  count: number;
  case: FuzzCase;
  /** What the mutations did, for a reader. */
  whats: string[];
}

export interface FuzzOptions {
  target: TargetName;
  seeds: Seed[];
  /** fast-check seed: the same seed, images and limits give the same run. */
  seed: number;
  maxCases?: number;
  timeMs?: number;
  caseTimeMs: number;
  /**
   * Memory bound: one case may allocate at most this (heap + array buffers across the case), and the
   * memory held after a full GC may exceed what it was at the start by at most this.
   */
  memoryLimit: number;
  /** Starting corpus (e.g. kept from an earlier run). */
  corpus?: FuzzCase[];
  /** Called before each case (the long run saves it, so a case that kills the process is known). */
  beforeCase?: (c: FuzzCase) => void;
  afterCase?: () => void;
  /** Stop at the first finding (the test) or go on (the long run). */
  stopAtFinding?: boolean;
}

export interface FuzzStats {
  cases: number;
  accepted: number;
  refused: number;
  features: number;
  corpus: FuzzCase[];
  findings: Finding[];
  ms: number;
  /** Of which collecting coverage. */
  coverageMs: number;
  /** The slowest cases (ms and what they did), slowest first. */
  slowest: Array<{ ms: number; whats: string[] }>;
  /** Memory held after GC above the start (MiB), sampled every SAMPLE_EVERY cases. */
  held: Array<{ cases: number; mib: number }>;
}

const MAX_MUTATIONS = 8;
const BATCH = 64;
/** Corpus entries kept at most (a full corpus replaces its entries in turn). */
export const MAX_CORPUS = 4096;
const MiB = 2 ** 20;
const SAMPLE_EVERY = 1024;

const memory = (): number => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

let collect: (() => void) | undefined;
/** V8's full GC (exposed for this process if it was not started with --expose-gc). */
function gc(): void {
  if (!collect) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) collect = g;
    else {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as () => void;
    }
  }
  collect();
}

/** Memory the process holds once garbage is collected and V8's deferred frees have run. */
export async function settledMemory(): Promise<number> {
  gc();
  await turn();
  gc();
  await turn();
  return memory();
}

/** What a finding is keyed by: one bug is one finding however many cases reach it. */
export function causeOf(kind: Finding['kind'], message: string): string {
  const lines = message.split('\n');
  const head = lines[0]!.replace(/0x[0-9a-f]+|\d+/gi, 'N');
  const frame = lines
    .find((l) => /^\s*at .*\/engine\//.test(l))
    ?.replace(/^.*\/engine\//, 'engine/')
    .replace(/\)$/, '');
  return [kind, head, frame].filter(Boolean).join(' | ');
}

/** Run one case once: undefined when it ended well (or was refused as it should be), else the finding. */
export async function runCase(
  target: TargetName,
  c: FuzzCase,
  seeds: Seed[],
  caseTimeMs: number,
): Promise<
  | { outcome: 'accepted' | 'refused'; whats: string[] }
  | { finding: Omit<Finding, 'target' | 'case' | 'cause' | 'count'> }
> {
  let work: Promise<void>;
  let whats: string[] = [];
  if ('contract' in c) work = contract(c.contract);
  else {
    const seed = seeds.find((s) => s.name === c.seed);
    if (!seed) throw new Error(`no seed ${c.seed}`);
    const r = applyAll(seed.bytes, seed.layout, c.mutations);
    whats = r.whats;
    const run = IMAGE_RUNNERS[target as keyof typeof IMAGE_RUNNERS];
    work = run(r.bytes);
  }
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((ok) => {
    timer = setTimeout(() => ok('hang'), caseTimeMs);
  });
  try {
    const r = await Promise.race([work.then(() => 'accepted' as const), hang]);
    if (r === 'hang') return { finding: { kind: 'hang', message: `no answer within ${caseTimeMs} ms`, whats } };
    return { outcome: 'accepted', whats };
  } catch (e) {
    if (isExpectedError(e)) return { outcome: 'refused', whats };
    const err = e as Error;
    const kind =
      err instanceof RangeError && /allocation|Invalid (typed )?array length/i.test(err.message) ? 'memory' : 'crash';
    return { finding: { kind, message: `${err?.constructor?.name}: ${err?.stack ?? String(e)}`, whats } };
  } finally {
    clearTimeout(timer);
  }
}

/** Drop mutations one at a time while the same kind of finding remains (a shorter case to read). */
export async function minimise(target: TargetName, f: Finding, seeds: Seed[], caseTimeMs: number): Promise<Finding> {
  if ('contract' in f.case) return f;
  let best = f;
  for (let i = (best.case as { mutations: Mutation[] }).mutations.length - 1; i >= 0; i--) {
    const ms = (best.case as { seed: string; mutations: Mutation[] }).mutations;
    if (ms.length <= 1) break;
    const shorter: FuzzCase = { seed: (best.case as { seed: string }).seed, mutations: ms.filter((_, j) => j !== i) };
    const r = await runCase(target, shorter, seeds, caseTimeMs);
    if ('finding' in r && causeOf(r.finding.kind, r.finding.message) === best.cause)
      best = { ...best, case: shorter, ...r.finding };
  }
  return best;
}

/** The coverage-steered campaign on one target. */
export async function fuzz(o: FuzzOptions): Promise<FuzzStats> {
  const started = Date.now();
  const cov = new CoverageMap();
  await cov.start();
  const corpus: FuzzCase[] = [...(o.corpus ?? [])];
  const stats: FuzzStats = {
    cases: 0,
    accepted: 0,
    refused: 0,
    features: 0,
    corpus,
    findings: [],
    ms: 0,
    coverageMs: 0,
    slowest: [],
    held: [],
  };
  let base = await settledMemory();
  const start = base;
  const isContract = o.target === 'contract';
  const imageArb = fc.record({
    seed: fc.nat(),
    base: fc.nat(),
    fromCorpus: fc.boolean(),
    mutations: mutationsArb,
  });
  const done = (): boolean =>
    (o.maxCases !== undefined && stats.cases >= o.maxCases) ||
    (o.timeMs !== undefined && Date.now() - started >= o.timeMs) ||
    (!!o.stopAtFinding && stats.findings.length > 0);
  // The seeds themselves (and a kept corpus) run first: their coverage is the baseline.
  const queue: FuzzCase[] = isContract ? [] : [...o.seeds.map((s) => ({ seed: s.name, mutations: [] })), ...corpus];
  await cov.take();
  for (let batch = 0; !done(); batch++) {
    if (queue.length === 0) {
      const batchSeed = (o.seed + batch * 0x9e3779b1) | 0;
      if (isContract) {
        for (const c of fc.sample(contractCaseArb, { seed: batchSeed, numRuns: BATCH })) queue.push({ contract: c });
      } else {
        const imageCases = corpus.filter((c): c is { seed: string; mutations: Mutation[] } => 'seed' in c);
        for (const g of fc.sample(imageArb, { seed: batchSeed, numRuns: BATCH })) {
          const parent = g.fromCorpus && imageCases.length > 0 ? imageCases[g.base % imageCases.length] : undefined;
          const mutations = parent ? [...parent.mutations, ...g.mutations].slice(-MAX_MUTATIONS) : g.mutations;
          queue.push({ seed: parent?.seed ?? o.seeds[g.seed % o.seeds.length]!.name, mutations });
        }
      }
    }
    while (queue.length > 0 && !done()) {
      const c = queue.shift()!;
      await turn();
      o.beforeCase?.(c);
      const caseStart = Date.now();
      const before = memory();
      const r = await runCase(o.target, c, o.seeds, o.caseTimeMs);
      const after = memory();
      o.afterCase?.();
      const caseMs = Date.now() - caseStart;
      const whats = 'whats' in r ? r.whats : r.finding.whats;
      if (stats.slowest.length < 3 || caseMs > stats.slowest.at(-1)!.ms) {
        stats.slowest.push({ ms: caseMs, whats });
        stats.slowest.sort((a, b) => b.ms - a.ms).splice(3);
      }
      stats.cases++;
      if (stats.cases % SAMPLE_EVERY === 0)
        stats.held.push({ cases: stats.cases, mib: Math.round(((await settledMemory()) - start) / MiB) });
      if ('finding' in r) {
        const cause = causeOf(r.finding.kind, r.finding.message);
        const known = stats.findings.find((x) => x.cause === cause);
        if (known) known.count++;
        else
          stats.findings.push(
            await minimise(
              o.target,
              { target: o.target, case: c, cause, count: 1, ...r.finding },
              o.seeds,
              o.caseTimeMs,
            ),
          );
        await cov.take();
        continue;
      }
      if (r.outcome === 'accepted') stats.accepted++;
      else stats.refused++;
      const t0 = Date.now();
      const fresh = await cov.take();
      stats.coverageMs += Date.now() - t0;
      if (fresh > 0 && !corpus.includes(c)) {
        if (corpus.length < MAX_CORPUS) corpus.push(c);
        else corpus[stats.cases % MAX_CORPUS] = c;
      }
      // Growth across one case is a lower bound of what it allocated (garbage is never counted).
      if (after - before > o.memoryLimit)
        note(
          stats,
          { target: o.target, kind: 'memory', case: c, whats },
          `one case allocated at least ${Math.round((after - before) / MiB)} MiB`,
        );
      // Above the bound before GC: measure what is really held; only that is a leak.
      if (memory() - base > o.memoryLimit) {
        const held = await settledMemory();
        if (held - base > o.memoryLimit) {
          note(
            stats,
            { target: o.target, kind: 'memory', case: c, whats },
            `memory held after GC grew by ${Math.round((held - base) / MiB)} MiB`,
          );
          base = held; // flagged once; a further leak of the same size is flagged again
        }
      }
    }
  }
  stats.features = cov.size;
  stats.ms = Date.now() - started;
  return stats;
}

/** Count a memory finding under its cause (the first case that reached it is kept). */
function note(stats: FuzzStats, f: Omit<Finding, 'cause' | 'count' | 'message'>, message: string): void {
  const cause = causeOf(f.kind, message);
  const known = stats.findings.find((x) => x.cause === cause);
  if (known) known.count++;
  else stats.findings.push({ ...f, message, cause, count: 1 });
}
