// The timeline of a write log: one row per entry with its flush epoch and the host clusters it
// touches, each named by the role it holds once its epoch is flushed (or, when it is not referenced
// yet at that point — data written before the flush that orders its L2 update — the first role it
// takes later). The roles come from the
// project's checker run on the image at the end of each epoch (at most MAX_CHECKPOINTS of them:
// with more epochs, an entry takes the roles of the next checkpoint after its epoch).
import type { CancelToken, ProgressSink } from '../../base/task-control.js';
import { runCheckPasses } from '../../check/index.js';
import { HostRole } from '../../contract/roles.js';
import type { HistoryEntry, HistoryEntryKind, HistoryState, TouchedRun } from '../../contract/history.js';
import { Qcow2Image } from '../../image/qcow2-image.js';
import type { WriteLogEntry } from '../../io/recording-io.js';
import type { CrashState, CrashStateBuilder } from '../../lab/crash-states.js';

/** Role maps computed to name the clusters the entries touch. */
export const MAX_CHECKPOINTS = 64;
/** Clusters listed per entry (a larger write is listed by its first ones and marked truncated). */
const MAX_TOUCHED = 4096;

/** Log indices of the flushes. */
export function flushesOf(log: readonly WriteLogEntry[]): number[] {
  const out: number[] = [];
  log.forEach((e, i) => {
    if (e.kind === 'flush') out.push(i);
  });
  return out;
}

/** The image after the first `p` entries, all landed in order. */
export function prefixState(log: readonly WriteLogEntry[], p: number): CrashState {
  let lastFlush = -1;
  for (let i = 0; i < p; i++) if (log[i]!.kind === 'flush') lastFlush = i;
  const applied: number[] = [];
  for (let i = lastFlush + 1; i < p; i++) if (log[i]!.kind !== 'flush') applied.push(i);
  return { kind: 'prefix', crashAt: p, lastFlush, applied };
}

/** The checker's view of the image after `p` entries: its role map and counters (roles empty when it cannot open). */
export async function checkPrefix(
  builder: CrashStateBuilder,
  log: readonly WriteLogEntry[],
  p: number,
  cancel?: CancelToken,
): Promise<Omit<HistoryState, 'prefix'>> {
  const io = await builder.build(prefixState(log, p));
  const fileSize = await io.size();
  const none = (why: string): Omit<HistoryState, 'prefix'> => ({
    clusterSize: 0,
    hostClusters: 0,
    roles: new Uint8Array(0),
    legend: [],
    counters: {
      checkErrors: 1,
      corruptions: 0,
      leaks: 0,
      corruptionsFixed: 0,
      leaksFixed: 0,
      imageEndOffset: fileSize,
      totalClusters: 0,
      allocatedClusters: 0,
      fragmentedClusters: 0,
      compressedClusters: 0,
    },
    fileSize,
    failed: why,
  });
  let image: Qcow2Image;
  try {
    image = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  } catch (e) {
    return none(e instanceof Error ? e.message : String(e));
  }
  const a = await runCheckPasses(image, { roleMap: true, ...(cancel ? { cancel } : {}) });
  const cs = image.clusterSize;
  const hostClusters = Math.ceil(fileSize / cs);
  const roles = a.roleMap ? a.roleMap.slice(0, Math.max(hostClusters, lastUsed(a.roleMap))) : new Uint8Array(0);
  const legend: number[] = [];
  for (const r of roles) legend[r] = (legend[r] ?? 0) + 1;
  for (let i = 0; i < legend.length; i++) legend[i] ??= 0;
  return {
    clusterSize: cs,
    hostClusters: roles.length,
    roles,
    legend,
    counters: a.counters,
    fileSize,
    ...(a.failed !== undefined ? { failed: a.failed } : {}),
  };
}

function lastUsed(roles: Uint8Array): number {
  let end = roles.length;
  while (end > 0 && roles[end - 1] === HostRole.Free) end--;
  return end;
}

function kindOf(e: WriteLogEntry): HistoryEntryKind {
  if (e.kind !== 'write') return e.kind;
  return e.data.every((b) => b === 0) ? 'zero' : 'write';
}

function extent(e: WriteLogEntry): { offset: number; length: number } {
  if (e.kind === 'write') return { offset: e.offset, length: e.data.length };
  if (e.kind === 'discard') return { offset: e.offset, length: e.length };
  if (e.kind === 'truncate') return { offset: 0, length: e.size };
  return { offset: 0, length: 0 };
}

/** Checkpoint prefixes: the end of every epoch, thinned to `max` (the end of the log always kept). */
export function checkpoints(log: readonly WriteLogEntry[], max = MAX_CHECKPOINTS): number[] {
  const ends = [...flushesOf(log).map((f) => f + 1)];
  if (ends[ends.length - 1] !== log.length) ends.push(log.length);
  if (ends.length <= max) return ends;
  const step = ends.length / (max - 1);
  const out: number[] = [];
  for (let k = 0; k < max - 1; k++) out.push(ends[Math.floor(k * step)]!);
  out.push(log.length);
  return [...new Set(out)];
}

export interface TimelineOptions {
  cancel?: CancelToken;
  progress?: ProgressSink;
}

/** Every entry of `log` with its epoch and the clusters it touches by role. */
export async function buildTimeline(
  log: readonly WriteLogEntry[],
  source: readonly number[],
  builder: CrashStateBuilder,
  clusterSize: number,
  opts: TimelineOptions = {},
): Promise<HistoryEntry[]> {
  const points = checkpoints(log);
  const maps: Uint8Array[] = [];
  for (const [k, p] of points.entries()) {
    opts.cancel?.throwIfCancelled();
    opts.progress?.({ fraction: k / points.length, stage: `roles after entry ${p} of ${log.length}` });
    maps.push((await checkPrefix(builder, log, p, opts.cancel)).roles);
    await new Promise((r) => setImmediate(r));
  }
  const entries: HistoryEntry[] = [];
  let epoch = 0;
  let cp = 0;
  for (const [i, e] of log.entries()) {
    // The checkpoint at or after the end of this entry's epoch.
    while (cp < points.length - 1 && points[cp]! <= i) cp++;
    const later = maps.slice(cp);
    const { offset, length } = extent(e);
    const entry: HistoryEntry = {
      index: i,
      source: source[i] ?? i,
      kind: kindOf(e),
      offset,
      length,
      epoch,
      touched: [],
    };
    if (e.kind === 'write' || e.kind === 'discard') {
      const first = Math.floor(offset / clusterSize);
      const end = Math.ceil((offset + length) / clusterSize);
      const shown = Math.min(end, first + MAX_TOUCHED);
      entry.touched = runsOf(first, shown, later);
      if (shown < end) entry.touchedTruncated = true;
    }
    entries.push(entry);
    if (e.kind === 'flush') epoch++;
  }
  return entries;
}

/** Not yet (or no longer) a part of the image: look at a later checkpoint for what the cluster becomes. */
const UNSETTLED = new Set<number>([HostRole.Free, HostRole.Leaked, HostRole.BeyondEof]);

/** The role a cluster holds at the first checkpoint, or the first settled role it takes at a later one. */
function roleOf(c: number, maps: Uint8Array[]): number {
  const now = maps[0]?.[c] ?? HostRole.Free;
  if (!UNSETTLED.has(now)) return now;
  for (const m of maps) {
    const r = m[c] ?? HostRole.Free;
    if (!UNSETTLED.has(r)) return r;
  }
  return now;
}

function runsOf(first: number, end: number, maps: Uint8Array[]): TouchedRun[] {
  const out: TouchedRun[] = [];
  for (let c = first; c < end; c++) {
    const role = roleOf(c, maps);
    const last = out[out.length - 1];
    if (last && last.role === role && last.first + last.count === c) last.count++;
    else out.push({ first: c, count: 1, role });
  }
  return out;
}
