// One layer of the image (the active L1 table or a snapshot's): the pointer to its L1 table, the
// L1 entries, and the L2 tables they lead to, read in sorted batches and delivered in L1 order.
import * as C from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { l1Offset } from '../../format/l2-entry.js';
import { readPadded } from '../../io/positional-io.js';
import { pipeline } from './batch-reads.js';
import type { TraversalContext } from './context.js';
import { visitL2Entries } from './l2-entries.js';
import { readable, tableProblem } from './pointer.js';
import type { Holder, Layer, PointerProblem, Reference, TableRead } from './types.js';

/** The reference to a layer's L1 table: from the header (active) or from the snapshot table. */
export function l1TableReference(ctx: TraversalContext, layer: Layer): Reference {
  const { header, fileSize } = ctx.src;
  const active = layer.snapshotId === undefined;
  const from: Holder = active
    ? { kind: 'header' }
    : { kind: 'snapshot-table', table: header.snapshotsOffset, snapshotId: layer.snapshotId! };
  if (!active && layer.snapshotIndex !== undefined) from.index = layer.snapshotIndex;
  const length = layer.l1Size * C.L1_ENTRY_SIZE;
  let problem: PointerProblem | undefined;
  if (layer.l1Offset % ctx.clusterSize !== 0) problem = 'unaligned';
  else if (length > C.QCOW_MAX_L1_SIZE) problem = 'too-large';
  else problem = tableProblem(layer.l1Offset, length, fileSize, ctx.clusterSize);
  const r: Reference = {
    target: active ? 'l1' : 'snapshot-l1',
    offset: layer.l1Offset,
    length,
    from,
    hi: 0,
    lo: 0,
    reserved: false,
  };
  if (problem) r.problem = problem;
  return r;
}

/** Walk one layer. */
export async function walkLayer(ctx: TraversalContext, layer: Layer): Promise<void> {
  ctx.checkCancel();
  const ref = l1TableReference(ctx, layer);
  const wanted = ctx.visitor.reference?.(ref) !== false;
  if (!wanted || ref.problem === 'unaligned' || ref.problem === 'too-large') return;
  if (!readable(ref.offset, ref.length, ctx.src.fileSize, ctx.clusterSize)) return;
  const active = layer.snapshotId === undefined;
  const l1 =
    active && ctx.src.l1 && ctx.src.l1.length >= ref.length
      ? ctx.src.l1.subarray(0, ref.length)
      : await readPadded(ctx.src.io, ref.offset, ref.length);
  ctx.visitor.table?.({ kind: 'l1', offset: ref.offset, layer }, l1);
  if (ctx.opts.asQemuCheck) return walkL1AsQemuCheck(ctx, layer, l1);
  const pending = l1Entries(ctx, layer, l1);
  await walkL2Tables(ctx, pending, false);
}

/** L1 entry `i` (`hi`, `lo`, not both zero) of `layer` as a reference to its L2 table. */
function l2Reference(ctx: TraversalContext, layer: Layer, i: number, hi: number, lo: number): Reference {
  const cs = ctx.clusterSize;
  const offset = l1Offset(hi, lo);
  const active = layer.snapshotId === undefined;
  const from: Holder = {
    kind: active ? 'l1' : 'snapshot-l1',
    table: layer.l1Offset,
    index: i,
    guestOffset: i * ctx.src.geo.l1Coverage,
  };
  if (!active) from.snapshotId = layer.snapshotId!;
  const r: Reference = {
    target: 'l2',
    offset,
    length: cs,
    from,
    hi,
    lo,
    reserved: (hi & C.L1E_RESERVED_MASK_HI) !== 0 || (lo & C.L1E_RESERVED_MASK_LO) !== 0,
  };
  if (offset === 0) r.problem = 'zero';
  else if (offset % cs !== 0) r.problem = 'unaligned';
  else if (offset >= ctx.src.fileSize) r.problem = 'beyond-eof';
  return r;
}

/** Deliver the L1 entries; returns the L2 tables to walk now (offset, L1 index, layer). */
function l1Entries(ctx: TraversalContext, layer: Layer, l1: Uint8Array): Array<[number, number, Layer]> {
  const pending: Array<[number, number, Layer]> = [];
  for (let i = 0; i < layer.l1Size; i++) {
    const hi = u32(l1, i * 8);
    const lo = u32(l1, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    const r = l2Reference(ctx, layer, i, hi, lo);
    const offset = r.offset;
    if (ctx.visitor.reference?.(r) === false || r.problem) continue;
    if (ctx.seenL2.has(offset)) {
      if (ctx.opts.sharedL2 !== 'repeat') continue;
      let list = ctx.repeats.get(offset);
      if (!list) ctx.repeats.set(offset, (list = []));
      list.push({ offset, l1Index: i, layer });
      continue;
    }
    ctx.seenL2.add(offset);
    pending.push([offset, i, layer]);
  }
  return pending;
}

/** Read the tables batch by batch (sorted reads) and hand them over in the given order. */
async function walkL2Tables(ctx: TraversalContext, pending: Array<[number, number, Layer]>, repeat: boolean) {
  const { table, l2Table, l2Entry, l2TableEnd } = ctx.visitor;
  if (!table && !l2Table && !l2Entry && !l2TableEnd) return;
  let k = 0;
  const nextBatch = () => {
    if (k >= pending.length) return undefined;
    const batch = pending.slice(k, k + ctx.tablesPerBatch);
    k += batch.length;
    return { batch, offsets: batch.map((b) => b[0]) };
  };
  await readBatches(ctx, nextBatch, async ({ batch }, tables) => {
    for (const [offset, l1Index, layer] of batch) {
      const t = tables.get(offset)!;
      const read: TableRead = { kind: 'l2', offset, layer, index: l1Index, repeat };
      ctx.visitor.table?.(read, t);
      if (ctx.visitor.l2Table?.(read, t) !== true) visitL2Entries(ctx, t, offset, l1Index, layer, repeat);
      if (l2TableEnd) await l2TableEnd(read, t);
    }
    ctx.visitor.batchDone?.('l2', batch.length);
  });
}

/** The traversal's batched reading: sorted merged reads into its arenas, cancellable between batches. */
function readBatches<B extends { offsets: number[] }>(
  ctx: TraversalContext,
  nextBatch: () => B | undefined,
  handle: (batch: B, tables: Map<number, Uint8Array>) => void | Promise<void>,
): Promise<void> {
  const { io, fileSize } = ctx.src;
  return pipeline(
    io,
    fileSize,
    ctx.clusterSize,
    ctx.zeros,
    ctx.buffers,
    nextBatch,
    (batch, tables) => {
      ctx.checkCancel();
      return handle(batch, tables);
    },
    ctx.opts.yieldTurns ?? true,
  );
}

/**
 * QEMU's check_refcounts_l1: every non-empty entry in L1 order, its reference and then its table,
 * read where the entry points (aligned or not; zeros past the end of the file), however often it
 * was walked before. Tables are read a batch at a time, in sorted merged reads.
 */
async function walkL1AsQemuCheck(ctx: TraversalContext, layer: Layer, l1: Uint8Array): Promise<void> {
  const visitor = ctx.visitor;
  const end = visitor.l2TableEnd;
  let i = 0;
  const nextBatch = (): { entries: number[]; offsets: number[] } | undefined => {
    const entries: number[] = [];
    const offsets: number[] = [];
    for (; i < layer.l1Size && entries.length < ctx.tablesPerBatch; i++) {
      const hi = u32(l1, 8 * i);
      const lo = u32(l1, 8 * i + 4);
      if ((hi | lo) === 0) continue;
      entries.push(i);
      offsets.push(l1Offset(hi, lo));
    }
    return entries.length > 0 ? { entries, offsets } : undefined;
  };
  await readBatches(ctx, nextBatch, async ({ entries, offsets }, tables) => {
    for (let b = 0; b < entries.length; b++) {
      const idx = entries[b]!;
      const r = l2Reference(ctx, layer, idx, u32(l1, 8 * idx), u32(l1, 8 * idx + 4));
      if (visitor.reference?.(r) === false) continue;
      const offset = offsets[b]!;
      const t = tables.get(offset)!;
      const read: TableRead = { kind: 'l2', offset, layer, index: idx, repeat: false };
      visitor.table?.(read, t);
      visitL2Entries(ctx, t, offset, idx, layer, false);
      if (end) await end(read, t);
    }
    visitor.batchDone?.('l2', entries.length);
  });
}

/** Walk each shared L2 table again for each further L1 reference to it (QEMU's counting). */
export async function walkRepeats(ctx: TraversalContext): Promise<void> {
  const pending: Array<[number, number, Layer]> = [];
  for (const list of ctx.repeats.values()) for (const r of list) pending.push([r.offset, r.l1Index, r.layer]);
  await walkL2Tables(ctx, pending, true);
}
