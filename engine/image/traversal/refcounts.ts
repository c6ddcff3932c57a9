// The refcount structure: the header's pointer to the refcount table, its entries (pointers to
// refcount blocks) and, on request, the blocks themselves.
import * as C from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { readPadded } from '../../io/positional-io.js';
import type { TraversalContext } from './context.js';
import { readable, tableProblem } from './pointer.js';
import { readTables } from './read-tables.js';
import type { Reference } from './types.js';

/** Decode refcount table entry `i` of `reftable` (undefined when the entry is empty). */
export function refblockReference(
  reftable: Uint8Array,
  i: number,
  reftableOffset: number,
  ctxFileSize: number,
  cs: number,
): Reference | undefined {
  const hi = u32(reftable, i * 8);
  const lo = u32(reftable, i * 8 + 4);
  if (hi === 0 && lo === 0) return undefined;
  const offset = hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
  const r: Reference = {
    target: 'refcount-block',
    offset,
    length: cs,
    from: { kind: 'refcount-table', table: reftableOffset, index: i },
    hi,
    lo,
    reserved: (lo & C.REFT_RESERVED_MASK_LO) !== 0,
  };
  if (offset === 0) r.problem = 'zero';
  else if (offset % cs !== 0) r.problem = 'unaligned';
  else if (offset >= ctxFileSize) r.problem = 'beyond-eof';
  return r;
}

/** The refcount table and its entries, then (on request) the blocks. */
export async function walkRefcounts(ctx: TraversalContext): Promise<void> {
  const rt = await walkRefcountTable(ctx);
  if (rt) await walkRefblocks(ctx, rt);
}

/** The header's pointer to the refcount table; returns the table's bytes when it is followed. */
export async function walkRefcountTable(ctx: TraversalContext): Promise<Uint8Array | undefined> {
  ctx.checkCancel();
  const { header: h, fileSize } = ctx.src;
  const cs = ctx.clusterSize;
  const length = h.refcountTableClusters * cs;
  const ref: Reference = {
    target: 'refcount-table',
    offset: h.refcountTableOffset,
    length,
    from: { kind: 'header' },
    hi: 0,
    lo: 0,
    reserved: false,
  };
  const problem = tableProblem(ref.offset, length, fileSize, cs);
  if (problem) ref.problem = problem;
  if (ctx.visitor.reference?.(ref) === false || !readable(ref.offset, length, fileSize, cs)) return undefined;
  const rt =
    ctx.src.reftable && ctx.src.reftable.length >= length
      ? ctx.src.reftable.subarray(0, length)
      : await readPadded(ctx.src.io, ref.offset, length);
  ctx.visitor.table?.({ kind: 'refcount-table', offset: ref.offset }, rt);
  return rt;
}

/** The refcount table's entries (pointers to refcount blocks) and, on request, the blocks. */
export async function walkRefblocks(ctx: TraversalContext, rt: Uint8Array): Promise<void> {
  const { header: h, fileSize } = ctx.src;
  const cs = ctx.clusterSize;
  const blocks: Array<[number, number]> = [];
  for (let i = 0; i < rt.length / 8; i++) {
    const r = refblockReference(rt, i, h.refcountTableOffset, fileSize, cs);
    if (!r) continue;
    if (ctx.visitor.reference?.(r) === false || r.problem || r.reserved) continue;
    blocks.push([r.offset, i]);
  }
  if (!ctx.opts.refcountBlocks || !ctx.visitor.table) return;
  for (let k = 0; k < blocks.length; k += ctx.tablesPerBatch) {
    ctx.checkCancel();
    const batch = blocks.slice(k, k + ctx.tablesPerBatch);
    const read = await readTables(
      ctx.src.io,
      fileSize,
      batch.map((b) => b[0]),
      cs,
    );
    for (const [offset, index] of batch)
      ctx.visitor.table({ kind: 'refcount-block', offset, index }, read.get(offset)!);
    ctx.visitor.batchDone?.('refcount-block', batch.length);
  }
}
