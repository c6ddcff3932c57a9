// The lab for a write log recorded from any writer (a dm-log-writes log, e.g. from QEMU's
// blklogwrites driver): every crash state of the log, judged as the lab judges our own writer —
//   - metadata: no corruption (leaks allowed; a dirty lazy-refcounts image is repaired on open first)
//   - data: every guest sector holds its value at the last completed flush or one it takes later in
//     that flush epoch (engine/lab/replay-expect.ts)
//   - life goes on: the crashed image opens, takes new writes, and still checks clean.
// A failing state is reduced to the fewest volatile entries that still fail the same way.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MemoryIO } from '../io/memory-io.js';
import type { WriteLogEntry } from '../io/recording-io.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { continueAfterCrash } from './campaign.js';
import { type CrashState, CrashStateBuilder, enumerateCrashStates, prng } from './crash-states.js';
import { judgeMetadata } from './judge.js';
import { GuestExpectations, type OpenBacking } from './replay-expect.js';

export interface ReplayInput {
  /** The image file as it was when logging began. */
  base: Uint8Array;
  log: WriteLogEntry[];
  /** For each log item, the number of the log entry it came from (for messages); its own index when absent. */
  source?: number[];
  openBacking?: OpenBacking;
}

export interface ReplayOptions {
  seed?: number;
  subsetsPerEpoch?: number;
  tornPerEpoch?: number;
  budgetSeconds?: number;
  /** Try to continue writing on every Nth state (0: never). Default 3. */
  continueEvery?: number;
  /** Guest bytes compared per state (from offset 0). Default 64 MiB. */
  guestLimit?: number;
  dumpDir?: string;
  dumpEvery?: number;
  /** Failing states kept (and reduced) in the report. Default 3. */
  maxFailures?: number;
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface ReplayFailure {
  state: string;
  /** Log entries in the state (durable prefix and the volatile ones that landed). */
  entries: string;
  problems: string[];
  /** The fewest entries that still fail the same way (same durable prefix). */
  minimal: string;
  minimalEntries: string[];
}

export interface ReplayReport {
  entries: number;
  flushes: number;
  discards: number;
  statesPlanned: number;
  states: number;
  corrupt: number;
  dataMismatches: number;
  leaky: number;
  /**
   * States not judged because nobody can see them: with an empty base (a new file, published by
   * rename after its final flush, as strip and salvage write), every state before that flush.
   */
  unpublished?: number;
  /** States whose only qemu-img complaint is a COPIED flag on a cluster with one reference. */
  copiedBenign: number;
  dirtyRepaired: number;
  continueTried: number;
  continueFailures: number;
  /** Crashed images our writer refuses to write (a feature it does not support): not tried. */
  continueUnsupported: number;
  failures: ReplayFailure[];
  dumped: string[];
}

interface Verdict {
  corrupt: boolean;
  bad: number;
  leaky: boolean;
  copiedBenign: boolean;
  dirty: boolean;
  cont: 'ok' | 'failed' | 'unsupported' | 'skipped';
  details: string[];
}

const failed = (v: Verdict) => v.corrupt || v.bad > 0 || v.cont === 'failed';

/** Every prefix with discards ignored by the device (only when the log has discards). */
function noDiscardStates(log: readonly WriteLogEntry[]): CrashState[] {
  if (!log.some((e) => e.kind === 'discard')) return [];
  const out: CrashState[] = [];
  let lastFlush = -1;
  for (let p = 0; p <= log.length; p++) {
    const applied: number[] = [];
    for (let i = lastFlush + 1; i < p; i++) if (log[i]!.kind !== 'flush') applied.push(i);
    out.push({ kind: 'nodiscard', crashAt: p, lastFlush, applied, dropDiscards: true });
    if (p < log.length && log[p]!.kind === 'flush') lastFlush = p;
  }
  return out;
}

/** "0-11, 14, 17": log entry numbers as ranges. */
export function entryRanges(ids: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ids.length; ) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j]! + 1) j++;
    out.push(j > i ? `${ids[i]}-${ids[j]}` : String(ids[i]));
    i = j + 1;
  }
  return out.join(', ') || 'none';
}

export function describeEntry(e: WriteLogEntry, n: number): string {
  if (e.kind === 'write') return `#${n} write ${e.data.length} bytes at 0x${e.offset.toString(16)}`;
  if (e.kind === 'discard') return `#${n} discard ${e.length} bytes at 0x${e.offset.toString(16)}`;
  if (e.kind === 'truncate') return `#${n} truncate to ${e.size}`;
  return `#${n} flush`;
}

class Replayer {
  readonly builder: CrashStateBuilder;
  readonly expect: GuestExpectations;
  readonly src: (i: number) => number;

  constructor(
    readonly input: ReplayInput,
    readonly opts: ReplayOptions,
  ) {
    this.builder = new CrashStateBuilder(input.base, input.log);
    this.expect = new GuestExpectations(input.log, this.builder, input.openBacking, opts.guestLimit ?? 64 * 2 ** 20);
    this.src = (i) => input.source?.[i] ?? i;
  }

  async backingOptions(io: MemoryIO) {
    const h = (await Qcow2Image.open(io)).header;
    const backing =
      h.backingFile && this.input.openBacking
        ? await this.input.openBacking(h.backingFile, h.backingFormat)
        : undefined;
    return backing ? { backing } : {};
  }

  async judge(state: CrashState, tryContinue: boolean): Promise<Verdict> {
    const io = await this.builder.build(state);
    const details: string[] = [];
    const bad = await this.expect.check(io, state, details);
    const m = await judgeMetadata(io);
    details.push(...m.details);
    const v: Verdict = {
      corrupt: m.corruptions > 0,
      bad,
      leaky: m.leaks > 0,
      copiedBenign: m.copiedBenign > 0,
      dirty: m.wasDirty,
      cont: 'skipped',
      details,
    };
    if (tryContinue && !v.corrupt) {
      const notes: string[] = [];
      let opts = {};
      try {
        opts = await this.backingOptions(io);
      } catch {}
      const ok = await continueAfterCrash(io, notes, opts);
      v.cont = ok ? 'ok' : notes.some((n) => /cannot write: /.test(n)) ? 'unsupported' : 'failed';
      if (v.cont === 'failed') details.push(...notes);
    }
    return v;
  }

  /** Drop volatile entries one at a time while the state still fails the same way. */
  async minimize(state: CrashState, v: Verdict, deadline: number): Promise<CrashState> {
    const same = (w: Verdict) =>
      (v.corrupt && w.corrupt) || (v.bad > 0 && w.bad > 0) || (v.cont === 'failed' && w.cont === 'failed');
    let cur: CrashState = { ...state, applied: [...state.applied] };
    if (cur.torn) {
      const without: CrashState = { ...cur, torn: undefined };
      delete without.torn;
      if (same(await this.judge(without, v.cont === 'failed'))) cur = without;
    }
    for (let k = cur.applied.length - 1; k >= 0 && Date.now() < deadline; k--) {
      const trial: CrashState = { ...cur, applied: cur.applied.filter((_, j) => j !== k) };
      if (same(await this.judge(trial, v.cont === 'failed'))) cur = trial;
    }
    return cur;
  }

  entriesOf(s: CrashState): number[] {
    const ids: number[] = [];
    for (let i = 0; i <= s.lastFlush; i++) ids.push(i);
    ids.push(...s.applied);
    if (s.torn) ids.push(s.torn.index);
    return ids.sort((a, b) => a - b);
  }

  describe(s: CrashState): string {
    const durable = s.lastFlush >= 0 ? `durable 0-${this.src(s.lastFlush)}` : 'nothing durable';
    const vol = s.applied.map(this.src);
    const torn = s.torn ? `, #${this.src(s.torn.index)} torn (sectors ${s.torn.pieces.join(',')} landed)` : '';
    const disc = s.dropDiscards ? ', every discard ignored' : '';
    return `${durable}; in flight and landed: ${entryRanges(vol)}${torn}${disc}`;
  }
}

export async function replayLog(input: ReplayInput, opts: ReplayOptions = {}): Promise<ReplayReport> {
  const seed = opts.seed ?? 1;
  const t0 = Date.now();
  // Under a budget, the last fifth is kept for reducing failures: a verdict without its reproducer
  // is half an answer.
  const deadline = opts.budgetSeconds ? t0 + opts.budgetSeconds * 800 : Infinity;
  const reduceBy = opts.budgetSeconds ? Math.max(t0 + opts.budgetSeconds * 1000, Date.now() + 1000) : Infinity;
  const r = new Replayer(input, opts);
  const log = input.log;
  let states = enumerateCrashStates(log, {
    seed,
    subsetsPerEpoch: opts.subsetsPerEpoch ?? 30,
    tornPerEpoch: opts.tornPerEpoch ?? 10,
  });
  states.push(...noDiscardStates(log));
  let unpublished = 0;
  if (input.base.length === 0) {
    const lastFlush = log.map((e) => e.kind).lastIndexOf('flush');
    const visible = states.filter((s) => lastFlush >= 0 && s.lastFlush === lastFlush);
    unpublished = states.length - visible.length;
    states = visible;
  }
  if (Number.isFinite(deadline)) {
    // Under a time budget, a seeded random order keeps a fair sample when the time runs out.
    const rnd = prng(seed ^ 0x5eed);
    const keyed = states.map((s) => ({ s, k: rnd() }));
    keyed.sort((a, b) => a.k - b.k);
    states = keyed.map((x) => x.s);
  }
  const rep: ReplayReport = {
    entries: log.length,
    flushes: log.filter((e) => e.kind === 'flush').length,
    discards: log.filter((e) => e.kind === 'discard').length,
    statesPlanned: states.length,
    unpublished,
    states: 0,
    corrupt: 0,
    dataMismatches: 0,
    leaky: 0,
    copiedBenign: 0,
    dirtyRepaired: 0,
    continueTried: 0,
    continueFailures: 0,
    continueUnsupported: 0,
    failures: [],
    dumped: [],
  };
  const continueEvery = opts.continueEvery ?? 3;
  const dumpEvery = opts.dumpEvery ?? 25;
  if (opts.dumpDir) mkdirSync(opts.dumpDir, { recursive: true });
  const failing: Array<{ state: CrashState; v: Verdict }> = [];
  for (let i = 0; i < states.length && Date.now() < deadline; i++) {
    const state = states[i]!;
    const v = await r.judge(state, continueEvery > 0 && i % continueEvery === 0);
    rep.states++;
    if (v.corrupt) rep.corrupt++;
    if (v.bad > 0) rep.dataMismatches++;
    if (v.leaky) rep.leaky++;
    if (v.copiedBenign && !v.corrupt) rep.copiedBenign++;
    if (v.dirty) rep.dirtyRepaired++;
    if (v.cont !== 'skipped' && v.cont !== 'unsupported') rep.continueTried++;
    if (v.cont === 'failed') rep.continueFailures++;
    if (v.cont === 'unsupported') rep.continueUnsupported++;
    if (failed(v) && failing.length < (opts.maxFailures ?? 3)) failing.push({ state, v });
    if (opts.dumpDir && (i % dumpEvery === 0 || (failed(v) && rep.dumped.length < 200))) {
      const file = join(
        opts.dumpDir,
        `state-${String(i).padStart(5, '0')}-${state.kind}${failed(v) ? '-FAILED' : ''}.qcow2`,
      );
      writeFileSync(file, (await r.builder.build(state)).snapshot());
      rep.dumped.push(file);
    }
    opts.onProgress?.({ done: i + 1, total: states.length });
  }
  const reduceDeadline = Number.isFinite(reduceBy) ? Math.max(reduceBy, Date.now() + 1000) : Date.now() + 60_000;
  for (const { state, v } of failing) {
    const min = await r.minimize(state, v, reduceDeadline);
    rep.failures.push({
      state: r.describe(state),
      entries: entryRanges(r.entriesOf(state).map(r.src)),
      problems: v.details.slice(0, 4),
      minimal: r.describe(min),
      minimalEntries: [...min.applied, ...(min.torn ? [min.torn.index] : [])]
        .sort((a, b) => a - b)
        .map((i) => describeEntry(log[i]!, r.src(i))),
    });
  }
  return rep;
}
