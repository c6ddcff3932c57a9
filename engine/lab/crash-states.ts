// Crash states of a recorded write log (engine/io/recording-io.ts), and how to build one.
//
// Model: a crash at log position `crashAt` means entries [0, crashAt) were issued. Everything
// issued before the last flush that *completed* before the crash is on disk. Writes issued after
// that flush sat in a volatile cache: any subset of them may have reached the disk (the cache
// reorders), and one of them may have reached it only partly, torn at 512-byte sectors.
import type { WriteLogEntry } from '../io/recording-io.js';
import { MemoryIO } from '../io/memory-io.js';
import { SECTOR_SIZE } from '../format/constants.js';

export type CrashStateKind = 'prefix' | 'subset' | 'torn' | 'nodiscard';

export interface CrashState {
  kind: CrashStateKind;
  /** Entries [0, crashAt) were issued before the crash. */
  crashAt: number;
  /** Log index of the last flush completed before the crash, -1 if none: entries up to it are durable. */
  lastFlush: number;
  /** Log indices in (lastFlush, crashAt) of the volatile writes/truncates/discards that reached the disk, ascending. */
  applied: number[];
  /** One volatile write that reached the disk only partly: which sector pieces of it landed. */
  torn?: { index: number; pieces: number[] };
  /** No discard ever reached the disk (a device may ignore them), durable ones included. */
  dropDiscards?: boolean;
}

export interface EnumerateOptions {
  /** Seed of the pseudo-random choices (same seed, same states). */
  seed?: number;
  /** Include every prefix of the log (all issued writes landed, in order). Default true. */
  prefixes?: boolean;
  /** Random subsets per flush epoch. Default 8. */
  subsetsPerEpoch?: number;
  /** Random subsets with one torn write per flush epoch. Default 4. */
  tornPerEpoch?: number;
}

/** A small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The write split at absolute 512-byte sector boundaries: [start, end) byte ranges inside `data`. */
export function sectorPieces(offset: number, length: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = 0;
  while (pos < length) {
    const abs = offset + pos;
    const next = Math.min(length, pos + (SECTOR_SIZE - (abs % SECTOR_SIZE)));
    out.push([pos, next]);
    pos = next;
  }
  return out;
}

/**
 * Every prefix of the log, then per flush epoch seeded random subsets of the volatile writes and
 * seeded subsets with one write torn. Deterministic for a given log and options.
 */
export function enumerateCrashStates(log: readonly WriteLogEntry[], opts: EnumerateOptions = {}): CrashState[] {
  const rnd = prng(opts.seed ?? 1);
  const states: CrashState[] = [];
  const flushes: number[] = [];
  log.forEach((e, i) => {
    if (e.kind === 'flush') flushes.push(i);
  });
  const lastFlushBefore = (p: number): number => {
    let f = -1;
    for (const x of flushes) {
      if (x < p) f = x;
      else break;
    }
    return f;
  };

  if (opts.prefixes ?? true) {
    for (let p = 0; p <= log.length; p++) {
      const lf = lastFlushBefore(p);
      const applied: number[] = [];
      for (let i = lf + 1; i < p; i++) if (log[i]!.kind !== 'flush') applied.push(i);
      states.push({ kind: 'prefix', crashAt: p, lastFlush: lf, applied });
    }
  }

  // Epochs: (flush_k-1, flush_k], the last one open-ended to the end of the log.
  const bounds = [-1, ...flushes, log.length];
  const subsets = opts.subsetsPerEpoch ?? 8;
  const torn = opts.tornPerEpoch ?? 4;
  for (let k = 0; k + 1 < bounds.length; k++) {
    const start = bounds[k]!; // last durable flush (or -1)
    const end = bounds[k + 1]!; // the flush that closes the epoch (not completed in these states)
    const volatile: number[] = [];
    for (let i = start + 1; i < end; i++) if (log[i]!.kind !== 'flush') volatile.push(i);
    if (volatile.length < 2) continue; // prefixes already cover 0 or 1 volatile write
    for (let s = 0; s < subsets + torn; s++) {
      // Crash anywhere in the epoch after at least one write was issued.
      const issued = 1 + Math.floor(rnd() * volatile.length);
      const candidates = volatile.slice(0, issued);
      const crashAt = candidates[candidates.length - 1]! + 1;
      const pLand = [0.25, 0.5, 0.75][Math.floor(rnd() * 3)]!;
      const applied = candidates.filter(() => rnd() < pLand);
      const state: CrashState = { kind: 'subset', crashAt, lastFlush: start, applied };
      if (s >= subsets) {
        const multi = candidates.filter((i) => {
          const e = log[i]!;
          return e.kind === 'write' && sectorPieces(e.offset, e.data.length).length > 1;
        });
        if (multi.length === 0) continue;
        const index = multi[Math.floor(rnd() * multi.length)]!;
        const e = log[index] as { kind: 'write'; offset: number; data: Uint8Array };
        const n = sectorPieces(e.offset, e.data.length).length;
        const pieces: number[] = [];
        for (let j = 0; j < n; j++) if (rnd() < 0.5) pieces.push(j);
        if (pieces.length === 0) pieces.push(Math.floor(rnd() * n));
        if (pieces.length === n) pieces.splice(Math.floor(rnd() * n), 1);
        state.kind = 'torn';
        state.applied = applied.filter((i) => i !== index);
        state.torn = { index, pieces };
      }
      states.push(state);
    }
  }
  return states;
}

async function applyEntry(io: MemoryIO, e: WriteLogEntry): Promise<void> {
  if (e.kind === 'write') return io.write(e.offset, e.data);
  if (e.kind === 'truncate') return io.truncate(e.size);
  if (e.kind === 'discard') {
    // A punched hole reads as zeros; it never grows the file.
    const n = Math.min(e.length, (await io.size()) - e.offset);
    if (n > 0) await io.write(e.offset, new Uint8Array(n));
  }
}

/**
 * Builds crash-state images onto copies of the base bytes. Keeps the last durable prefix so that
 * consecutive states with the same or a later last flush cost only the volatile part.
 */
export class CrashStateBuilder {
  private cacheUpTo = -1; // entries [0, cacheUpTo] applied to cache
  private cache: MemoryIO;

  constructor(
    private readonly base: Uint8Array,
    private readonly log: readonly WriteLogEntry[],
  ) {
    this.cache = new MemoryIO(base);
  }

  /** The disk contents after the crash `state`, as a fresh writable MemoryIO. */
  async build(state: CrashState): Promise<MemoryIO> {
    if (state.dropDiscards) return this.buildWithoutDiscards(state);
    if (state.lastFlush < this.cacheUpTo) {
      this.cache = new MemoryIO(this.base);
      this.cacheUpTo = -1;
    }
    for (let i = this.cacheUpTo + 1; i <= state.lastFlush; i++) await applyEntry(this.cache, this.log[i]!);
    this.cacheUpTo = Math.max(this.cacheUpTo, state.lastFlush);
    const io = new MemoryIO(this.cache.snapshot(), 'crash-state');
    // Volatile writes land in issue order (a later write to the same bytes wins), the torn one
    // with only some of its sectors.
    const order = state.torn ? [...state.applied, state.torn.index].sort((a, b) => a - b) : state.applied;
    for (const i of order) {
      const e = this.log[i]!;
      if (state.torn && i === state.torn.index && e.kind === 'write') {
        const pieces = sectorPieces(e.offset, e.data.length);
        for (const j of state.torn.pieces) {
          const [a, b] = pieces[j]!;
          await io.write(e.offset + a, e.data.subarray(a, b));
        }
      } else {
        await applyEntry(io, e);
      }
    }
    return io;
  }

  private async buildWithoutDiscards(state: CrashState): Promise<MemoryIO> {
    const io = new MemoryIO(this.base, 'crash-state');
    const keep = (i: number) => this.log[i]!.kind !== 'discard';
    for (let i = 0; i <= state.lastFlush; i++) if (keep(i)) await applyEntry(io, this.log[i]!);
    for (const i of state.applied) if (keep(i)) await applyEntry(io, this.log[i]!);
    return io;
  }
}

/** One-off: build a single crash state from the base bytes. */
export function materializeCrashState(
  base: Uint8Array,
  log: readonly WriteLogEntry[],
  state: CrashState,
): Promise<MemoryIO> {
  return new CrashStateBuilder(base, log).build(state);
}

/** A one-line description of a state, for reports and dump file names. */
export function describeCrashState(s: CrashState): string {
  const t =
    (s.torn ? ` torn#${s.torn.index}[${s.torn.pieces.join(',')}]` : '') + (s.dropDiscards ? ' no discards' : '');
  return `${s.kind} crash@${s.crashAt} durable<=${s.lastFlush} +${s.applied.length} volatile${t}`;
}
