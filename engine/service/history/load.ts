// Open a write history: a dm-log-writes log and its base image from the served root (confined and
// bounded like every other input), or a log our own writer records on one of the lab's workloads.
import type { CancelToken, ProgressSink } from '../../base/task-control.js';
import { ContractError } from '../../contract/errors.js';
import { MAX_HISTORY_ENTRIES, type HistoryOpened } from '../../contract/history.js';
import type { FileRef } from '../../contract/contract.js';
import { Qcow2Image } from '../../image/qcow2-image.js';
import { openInputFile } from '../../io/input-file.js';
import { MemoryIO } from '../../io/memory-io.js';
import type { WriteLogEntry } from '../../io/recording-io.js';
import { recordWorkload } from '../../lab/campaign.js';
import { CrashStateBuilder } from '../../lab/crash-states.js';
import { readDmLog } from '../../lab/dm-log.js';
import { labWorkloads } from '../../lab/workloads.js';
import { confinementOf, type HandlerContext } from '../handler.js';
import { addHistory, type History } from './store.js';
import { buildTimeline, checkPrefix } from './timeline.js';

/** The base image is held in memory (and copied per crash state): at most this big. */
export const MAX_BASE_BYTES = 64 * 2 ** 20;
/** Write data a log may carry in all (held in memory). */
export const MAX_LOG_DATA = 256 * 2 ** 20;

/** Open an input the way image.open does: resolved by the host, a regular file, confined to the root. */
async function readInput(ctx: HandlerContext, ref: FileRef) {
  const { path, name } = await ctx.host.resolve(ref);
  const io = await openInputFile(path, { root: confinementOf(ctx.host, path), name: path });
  return { io, name };
}

function tooBig(field: string, size: number, max: number): never {
  throw new ContractError('invalid-argument', `${field} is ${size} bytes, more than the ${max} a history may hold`, {
    field,
    value: String(size),
  });
}

export async function openHistory(ctx: HandlerContext, refs: { log: FileRef; base: FileRef }): Promise<HistoryOpened> {
  const base = await readInput(ctx, refs.base);
  let baseBytes: Uint8Array;
  try {
    const size = await base.io.size();
    if (size > MAX_BASE_BYTES) tooBig('args.base', size, MAX_BASE_BYTES);
    baseBytes = await base.io.read(0, size);
  } finally {
    await base.io.close();
  }
  const log = await readInput(ctx, refs.log);
  let dm: Awaited<ReturnType<typeof readDmLog>>;
  try {
    dm = await readDmLog(log.io, { maxDataBytes: MAX_LOG_DATA, maxEntries: MAX_HISTORY_ENTRIES });
  } finally {
    await log.io.close();
  }
  return finish(ctx, {
    name: log.name,
    baseName: base.name,
    sectorSize: dm.sectorSize,
    base: baseBytes,
    log: dm.log,
    source: dm.source,
  });
}

export function workloadNames(): string[] {
  return labWorkloads().map((w) => w.name);
}

/** Record our own writer (ordered, as it always writes) on a lab workload. */
export async function recordHistory(ctx: HandlerContext, workload: string): Promise<HistoryOpened> {
  const wl = labWorkloads().find((w) => w.name === workload);
  if (!wl)
    throw new ContractError('not-found', `no lab workload named ${workload} (known: ${workloadNames().join(', ')})`, {
      field: 'args.workload',
      value: workload,
    });
  ctx.progress({ fraction: 0, stage: `recording the ${workload} workload` });
  const rec = await recordWorkload(wl, 'ordered');
  return finish(ctx, {
    name: `lab workload “${workload}”`,
    baseName: `${workload}.qcow2 (before the workload)`,
    sectorSize: 512,
    base: rec.base,
    log: rec.log,
    source: rec.log.map((_, i) => i),
  });
}

interface Loaded {
  name: string;
  baseName: string;
  sectorSize: number;
  base: Uint8Array;
  log: WriteLogEntry[];
  source: number[];
}

/** The cluster size of the base, or of the image at the end of the log (a log that starts with an empty file). */
async function clusterSizeOf(builder: CrashStateBuilder, l: Loaded, cancel: CancelToken): Promise<number> {
  try {
    return (await Qcow2Image.open(new MemoryIO(l.base), { checkMode: true, zeroFillPastEof: true })).clusterSize;
  } catch {
    const end = await checkPrefix(builder, l.log, l.log.length, cancel);
    if (end.clusterSize > 0) return end.clusterSize;
    throw new ContractError(
      'format',
      `neither the base image nor the image at the end of the log is a qcow2 image (${end.failed ?? 'unreadable'})`,
      { field: 'args.base', value: l.baseName },
    );
  }
}

async function finish(ctx: HandlerContext, l: Loaded): Promise<HistoryOpened> {
  if (l.log.length > MAX_HISTORY_ENTRIES)
    throw new ContractError(
      'invalid-argument',
      `the log has ${l.log.length} entries, more than ${MAX_HISTORY_ENTRIES}`,
      {
        field: 'args.log',
        value: String(l.log.length),
      },
    );
  const builder = new CrashStateBuilder(l.base, l.log);
  const clusterSize = await clusterSizeOf(builder, l, ctx.cancel);
  const progress: ProgressSink = (p) => ctx.progress({ fraction: 0.1 + 0.9 * p.fraction, stage: p.stage });
  const entries = await buildTimeline(l.log, l.source, builder, clusterSize, { cancel: ctx.cancel, progress });
  const rolesNote =
    'Clusters are named by the role they hold once their flush epoch completes, or the first role they take later (the checker run on the image at the end of each epoch).';
  const h: History = addHistory(ctx.sessions, { ...l, clusterSize, entries, rolesNote, builder });
  return summary(h);
}

export function summary(h: History): HistoryOpened {
  const flushes = h.entries.filter((e) => e.kind === 'flush').length;
  const last = h.entries[h.entries.length - 1];
  return {
    handle: h.handle,
    name: h.name,
    baseName: h.baseName,
    sectorSize: h.sectorSize,
    clusterSize: h.clusterSize,
    entries: h.entries,
    flushes,
    epochs: flushes + (last && last.kind !== 'flush' ? 1 : 0),
    rolesNote: h.rolesNote,
  };
}
