// One layer of the image (the active L1 table or a snapshot's): the pointer to its L1 table, the
// L1 entries, and the L2 tables they lead to, read in sorted batches and delivered in L1 order.
import * as C from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { l1Offset } from '../../format/l2-entry.js';
import { readPadded } from '../../io/positional-io.js';
import type { TraversalContext } from './context.js';
import { visitL2Entries } from './l2-entries.js';
import { readable, tableProblem } from './pointer.js';
import { readTables } from './read-tables.js';
import type { Holder, Layer, PointerProblem, Reference } from './types.js';

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
  const pending = l1Entries(ctx, layer, l1);
  await walkL2Tables(ctx, pending, false);
}

/** Deliver the L1 entries; returns the L2 tables to walk now (offset, L1 index, layer). */
function l1Entries(ctx: TraversalContext, layer: Layer, l1: Uint8Array): Array<[number, number, Layer]> {
  const { fileSize } = ctx.src;
  const cs = ctx.clusterSize;
  const active = layer.snapshotId === undefined;
  const pending: Array<[number, number, Layer]> = [];
  for (let i = 0; i < layer.l1Size; i++) {
    const hi = u32(l1, i * 8);
    const lo = u32(l1, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    const offset = l1Offset(hi, lo);
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
    else if (offset >= fileSize) r.problem = 'beyond-eof';
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
  const cs = ctx.clusterSize;
  const wantBytes = ctx.visitor.table !== undefined || ctx.visitor.l2Entry !== undefined;
  if (!wantBytes) return;
  for (let k = 0; k < pending.length; k += ctx.tablesPerBatch) {
    ctx.checkCancel();
    const batch = pending.slice(k, k + ctx.tablesPerBatch);
    const tables = await readTables(
      ctx.src.io,
      ctx.src.fileSize,
      batch.map((b) => b[0]),
      cs,
    );
    for (const [offset, l1Index, layer] of batch) {
      const t = tables.get(offset)!;
      ctx.visitor.table?.({ kind: 'l2', offset, layer, index: l1Index, repeat }, t);
      visitL2Entries(ctx, t, offset, l1Index, layer, repeat);
    }
  }
}

/** Walk each shared L2 table again for each further L1 reference to it (QEMU's counting). */
export async function walkRepeats(ctx: TraversalContext): Promise<void> {
  const pending: Array<[number, number, Layer]> = [];
  for (const list of ctx.repeats.values()) for (const r of list) pending.push([r.offset, r.l1Index, r.layer]);
  await walkL2Tables(ctx, pending, true);
}
