// Persistent bitmaps: the header extension's pointer to the bitmap directory, each directory
// entry's pointer to its bitmap table, and each table entry's pointer to a bitmap data cluster.
// The directory is read leniently (fixed fields only), so a damaged one still yields its pointers.
import * as C from '../../format/constants.js';
import { walkBitmapDirectory } from '../../format/bitmap.js';
import { u32 } from '../../format/bytes.js';
import { readPadded } from '../../io/positional-io.js';
import type { TraversalContext } from './context.js';
import { readable, tableProblem } from './pointer.js';
import type { Reference, TableRead } from './types.js';

export async function walkBitmaps(ctx: TraversalContext): Promise<void> {
  const b = ctx.src.header.bitmaps;
  if (!b || b.directorySize === 0) return;
  const consistent = (ctx.src.header.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n;
  if (!consistent && !ctx.opts.staleBitmaps) return;
  ctx.checkCancel();
  const { fileSize } = ctx.src;
  const cs = ctx.clusterSize;
  const dir: Reference = {
    target: 'bitmap-directory',
    offset: b.directoryOffset,
    length: b.directorySize,
    from: { kind: 'header' },
    hi: 0,
    lo: 0,
    reserved: false,
  };
  const problem =
    b.directorySize > C.QCOW_MAX_BITMAP_DIRECTORY_SIZE
      ? 'too-large'
      : tableProblem(dir.offset, dir.length, fileSize, cs);
  if (problem) dir.problem = problem;
  const readBytes = Math.min(b.directorySize, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE);
  if (ctx.visitor.reference?.(dir) === false || !readable(dir.offset, readBytes, fileSize, cs)) return;
  const bytes = await readPadded(ctx.src.io, dir.offset, Math.min(readBytes, fileSize - dir.offset));
  ctx.visitor.table?.({ kind: 'bitmap-directory', offset: dir.offset }, bytes);
  // The format's one directory parser, in its lenient form: a damaged directory still yields its pointers.
  const { entries } = walkBitmapDirectory(bytes, b.nbBitmaps);
  for (const [i, e] of entries.entries()) {
    const tableSize = e.tableSize;
    const table: Reference = {
      target: 'bitmap-table',
      offset: e.tableOffset,
      length: tableSize * 8,
      from: { kind: 'bitmap-directory', table: dir.offset, index: i },
      hi: u32(bytes, e.dirOffset),
      lo: u32(bytes, e.dirOffset + 4),
      reserved: false,
    };
    const p =
      table.offset % cs !== 0
        ? 'unaligned'
        : tableSize > C.BME_MAX_TABLE_SIZE
          ? 'too-large'
          : tableSize === 0
            ? 'zero'
            : tableProblem(table.offset, table.length, fileSize, cs);
    if (p) table.problem = p;
    if (ctx.visitor.reference?.(table) === false || p === 'unaligned' || p === 'too-large') continue;
    if (!readable(table.offset, table.length, fileSize, cs)) continue;
    const read: TableRead = { kind: 'bitmap-table', offset: table.offset, index: i };
    const t = await walkBitmapTable(ctx, table, read);
    await ctx.visitor.bitmapTableEnd?.(read, t);
  }
}

async function walkBitmapTable(ctx: TraversalContext, table: Reference, read: TableRead): Promise<Uint8Array> {
  ctx.checkCancel();
  const cs = ctx.clusterSize;
  // Only the part inside the file is read: past its end every entry reads as zero (empty), and a
  // table at QEMU's size limit is 1 GiB — a hostile directory entry must not cost that much.
  const inFile = Math.min(table.length, Math.ceil((ctx.src.fileSize - table.offset) / 8) * 8);
  const t = await readPadded(ctx.src.io, table.offset, inFile);
  ctx.visitor.table?.(read, t);
  const visit = ctx.visitor.reference;
  if (!visit) return t;
  for (let k = 0; k < t.length / 8; k++) {
    const hi = u32(t, k * 8);
    const lo = u32(t, k * 8 + 4);
    const offset = (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
    if (offset === 0) continue;
    const r: Reference = {
      target: 'bitmap-data',
      offset,
      length: cs,
      from: { kind: 'bitmap-table', table: table.offset, index: k },
      hi,
      lo,
      reserved: (hi & C.BME_RESERVED_MASK_HI) !== 0 || (lo & C.BME_RESERVED_MASK_LO) !== 0,
    };
    if (offset % cs !== 0) r.problem = 'unaligned';
    else if (offset >= ctx.src.fileSize) r.problem = 'beyond-eof';
    visit(r);
  }
  return t;
}
