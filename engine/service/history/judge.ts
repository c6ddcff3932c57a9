// Crash states along a history's timeline, judged as the lab judges a replayed log (engine/lab):
// metadata by the checker (leaks allowed, a dirty lazy-refcounts image repaired first) and guest
// data against what the log itself says each sector may hold. Every prefix, interleaved with seeded
// subsets and torn writes per flush epoch, within a time budget; the caller can cancel between states.
import type { CancelToken, ProgressSink } from '../../base/task-control.js';
import { ContractError } from '../../contract/errors.js';
import type {
  HistoryExplanation,
  HistoryJudgement,
  HistoryStateVerdict,
  StateVerdictWord,
} from '../../contract/history.js';
import type { WriteLogEntry } from '../../io/recording-io.js';
import { type CrashState, CrashStateBuilder, enumerateCrashStates } from '../../lab/crash-states.js';
import { judgeMetadata } from '../../lab/judge.js';
import { describeEntry, entryRanges } from '../../lab/replay.js';
import { GuestExpectations } from '../../lab/replay-expect.js';
import { prefixState } from './timeline.js';
import type { JudgedState } from './store.js';

/** What judging needs of a history (plain data: it crosses to a worker thread). */
export interface JudgeInput {
  base: Uint8Array;
  log: WriteLogEntry[];
  /** dm-log-writes entry of each log item. */
  source: number[];
  /** Flush epoch of each log item. */
  epochs: number[];
}

/** A judge input with the builder and the guest model its states are built and checked with. */
interface Judging extends JudgeInput {
  builder: CrashStateBuilder;
  expect: GuestExpectations;
}

function judging(input: JudgeInput): Judging {
  const builder = new CrashStateBuilder(input.base, input.log);
  return { ...input, builder, expect: new GuestExpectations(input.log, builder, undefined, GUEST_COMPARED) };
}

/** Guest bytes compared per state: the start of the disk, where small logs write. */
export const GUEST_COMPARED = 16 * 2 ** 20;
/** Time a history.explain may spend reducing a failing state. */
export const EXPLAIN_MS = 15_000;

export interface JudgeRun {
  budgetSeconds: number;
  seed: number;
  cancel: CancelToken;
  progress: ProgressSink;
}

interface Outcome {
  word: StateVerdictWord;
  bad: number;
  details: string[];
}

const yieldNow = () => new Promise((r) => setImmediate(r));

/** Prefixes and per-epoch subsets, interleaved so that a budget that runs out leaves a fair sample of both. */
export function planStates(h: JudgeInput, seed: number): CrashState[] {
  const prefixes: CrashState[] = [];
  for (let p = 0; p <= h.log.length; p++) prefixes.push(prefixState(h.log, p));
  const others = enumerateCrashStates(h.log, { seed, prefixes: false, subsetsPerEpoch: 6, tornPerEpoch: 2 });
  const out: CrashState[] = [];
  for (let i = 0; i < Math.max(prefixes.length, others.length); i++) {
    if (i < prefixes.length) out.push(prefixes[i]!);
    if (i < others.length) out.push(others[i]!);
  }
  return out;
}

async function judgeOne(h: Judging, state: CrashState): Promise<Outcome> {
  const io = await h.builder.build(state);
  const details: string[] = [];
  const bad = await h.expect.check(io, state, details);
  const m = await judgeMetadata(io);
  details.push(...m.details);
  if (m.wasDirty) details.push('the dirty bit was set: judged after the repair a read-write open makes');
  const word: StateVerdictWord = m.corruptions > 0 || bad > 0 ? 'corrupt' : m.leaks > 0 ? 'leaky' : 'consistent';
  if (word === 'leaky' && details.length === 0) details.push(`${m.leaks} leaked cluster(s): space lost, no data`);
  return { word, bad, details };
}

function epochOf(h: JudgeInput, state: CrashState): number {
  return state.lastFlush < 0 ? 0 : (h.epochs[state.lastFlush] ?? 0) + 1;
}

export interface Judged {
  judgement: HistoryJudgement;
  judged: JudgedState[];
}

export async function judgeStates(input: JudgeInput, run: JudgeRun): Promise<Judged> {
  const t0 = Date.now();
  const deadline = t0 + run.budgetSeconds * 1000;
  const h = judging(input);
  const plan = planStates(h, run.seed);
  const states: HistoryStateVerdict[] = [];
  const judged: JudgedState[] = [];
  const counts: Record<StateVerdictWord, number> = { consistent: 0, leaky: 0, corrupt: 0 };
  for (const state of plan) {
    if (Date.now() >= deadline) break;
    run.cancel.throwIfCancelled();
    const o = await judgeOne(h, state);
    const id = states.length;
    counts[o.word]++;
    states.push({
      id,
      kind: state.kind === 'nodiscard' ? 'subset' : state.kind,
      crashAt: state.crashAt,
      lastFlush: state.lastFlush,
      epoch: epochOf(h, state),
      landed: state.applied.length + (state.torn ? 1 : 0),
      verdict: o.word,
      dataMismatches: o.bad,
      summary: o.details[0] ?? (o.word === 'consistent' ? 'no corruption, every guest sector as allowed' : ''),
    });
    judged.push({ state, details: o.details });
    run.progress({ fraction: states.length / plan.length, stage: `crash state ${states.length} of ${plan.length}` });
    await yieldNow();
  }
  const judgement: HistoryJudgement = {
    states,
    planned: plan.length,
    judged: states.length,
    complete: states.length === plan.length,
    elapsed: (Date.now() - t0) / 1000,
    counts,
    guestCompared: GUEST_COMPARED,
  };
  return { judgement, judged };
}

/** Timeline indices a state holds: the durable prefix, the in-flight ones that landed, the torn one. */
function entriesOf(s: CrashState): number[] {
  const ids: number[] = [];
  for (let i = 0; i <= s.lastFlush; i++) ids.push(i);
  ids.push(...s.applied);
  if (s.torn) ids.push(s.torn.index);
  return ids.sort((a, b) => a - b);
}

function describe(h: JudgeInput, s: CrashState): string {
  const src = (i: number) => h.source[i] ?? i;
  const durable = s.lastFlush >= 0 ? `entries 0-${s.lastFlush} durable (flushed)` : 'nothing flushed yet';
  const torn = s.torn ? `; entry ${s.torn.index} torn (sectors ${s.torn.pieces.join(',')} of it landed)` : '';
  const landed = s.applied.length ? entryRanges(s.applied) : 'none';
  const issued = s.crashAt > s.lastFlush + 1 ? `${s.lastFlush + 1}-${s.crashAt - 1}` : 'none';
  const log = s.applied.some((i) => src(i) !== i) ? ` (log entries ${entryRanges(s.applied.map(src))})` : '';
  const discards = s.dropDiscards ? '; every discard ignored by the device' : '';
  return `${durable}; in flight: ${issued}, landed: ${landed}${log}${torn}${discards}`;
}

/**
 * A judged state explained: its problems, and the fewest in-flight entries that still fail the
 * same way (the durable part kept), found by dropping one landed entry at a time.
 */
export async function explainJudged(
  input: JudgeInput,
  j: JudgedState,
  v: HistoryStateVerdict,
  cancel: CancelToken,
): Promise<HistoryExplanation> {
  const h = judging(input);
  const id = v.id;
  const deadline = Date.now() + EXPLAIN_MS;
  const key = (o: Outcome) => `${o.word}/${o.bad > 0}`;
  const want = key({ word: v.verdict, bad: v.dataMismatches, details: [] });
  let cur = j.state;
  let reduced = true;
  if (v.verdict !== 'consistent') {
    for (let k = cur.applied.length - 1; k >= 0; k--) {
      if (Date.now() >= deadline) {
        reduced = false;
        break;
      }
      cancel.throwIfCancelled();
      const trial: CrashState = { ...cur, applied: cur.applied.filter((_, x) => x !== k) };
      if (key(await judgeOne(h, trial)) === want) cur = trial;
      await yieldNow();
    }
  }
  const cause = [...cur.applied, ...(cur.torn ? [cur.torn.index] : [])].sort((a, b) => a - b);
  return {
    id,
    verdict: v.verdict,
    description: describe(h, j.state),
    entries: entryRanges(entriesOf(j.state)),
    problems: j.details.slice(0, 8),
    cause,
    causeText: cause.map((i) => describeEntry(h.log[i]!, i)),
    reduced,
  };
}

export function notJudged(id: number, n: number): never {
  throw new ContractError('not-found', `no judged state ${id} (${n} judged: run history.judge first)`, {
    field: 'args.state',
    value: String(id),
  });
}
