// Decode an L2 table's entries into the per-entry layer: type, host range, flags, referrer.
import * as C from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../../format/l2-entry.js';
import type { TraversalContext } from './context.js';
import { endsBeyondEof } from './pointer.js';
import type { L2Entry, Layer } from './types.js';

/** Hand every non-empty entry of the L2 table `t` (at `tableOffset`) to the visitor's `l2Entry`. */
export function visitL2Entries(
  ctx: TraversalContext,
  t: Uint8Array,
  tableOffset: number,
  l1Index: number,
  layer: Layer,
  repeat: boolean,
): void {
  const visit = ctx.visitor.l2Entry;
  if (!visit) return;
  const { geo, fileSize, externalData } = ctx.src;
  const cs = ctx.clusterSize;
  const step = geo.l2EntrySize;
  const ext = geo.extendedL2;
  const firstGuest = l1Index * geo.l1Coverage;
  const e: L2Entry = {
    type: ClusterType.Unallocated,
    offset: 0,
    length: 0,
    hi: 0,
    lo: 0,
    bitmapZero: 0,
    bitmapAlloc: 0,
    reserved: false,
    copied: false,
    table: tableOffset,
    index: 0,
    guestOffset: 0,
    layer,
    repeat,
  };
  for (let j = 0; j < geo.l2Entries; j++) {
    const p = j * step;
    const hi = u32(t, p);
    const lo = u32(t, p + 4);
    const bmZero = ext ? u32(t, p + 8) : 0;
    const bmAlloc = ext ? u32(t, p + 12) : 0;
    if ((hi | lo | bmZero | bmAlloc) === 0) continue;
    const type = classifyL2(hi, lo, ext, externalData);
    e.type = type;
    e.hi = hi;
    e.lo = lo;
    e.bitmapZero = bmZero;
    e.bitmapAlloc = bmAlloc;
    e.copied = (hi & C.OFLAG_COPIED_HI) !== 0;
    e.index = j;
    e.guestOffset = firstGuest + j * cs;
    e.problem = undefined;
    if (type === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, geo);
      e.offset = d.offset;
      e.length = d.size;
      e.reserved = false;
      if (!externalData && endsBeyondEof(d.offset, d.size, fileSize, cs)) e.problem = 'beyond-eof';
    } else {
      e.reserved = (hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & C.L2E_STD_RESERVED_MASK_LO) !== 0;
      const hasHost = type === ClusterType.Normal || type === ClusterType.ZeroAlloc;
      e.offset = hasHost ? l2Offset(hi, lo) : 0;
      e.length = hasHost ? cs : 0;
      if (hasHost && e.offset % cs !== 0) e.problem = 'unaligned';
      else if (hasHost && !externalData && e.offset >= fileSize) e.problem = 'beyond-eof';
    }
    visit(e);
  }
}
