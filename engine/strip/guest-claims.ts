// Which metadata clusters some L2 entry also maps as guest data. In a healthy image there are none;
// in a damaged one a cluster may be claimed both ways, and strip must then decide whether its bytes
// are metadata (kept) or someone's data (dropped).
import type { Geometry } from '../format/header.js';
import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import { hexOff } from './notes.js';

/**
 * Record in `claims`, for each cluster of `metaClusters` that an entry of the L2 table `buf` (at
 * host offset `table`) maps as guest data (normal, preallocated-zero or compressed), the first
 * such entry in words.
 */
export function scanL2ForClaims(
  buf: Uint8Array,
  table: number,
  geo: Geometry,
  fileSize: number,
  externalData: boolean,
  metaClusters: ReadonlySet<number>,
  claims: Map<number, string>,
): void {
  const cs = geo.clusterSize;
  const claim = (first: number, last: number, entry: number): void => {
    for (let c = first; c <= last; c++) {
      if (metaClusters.has(c) && !claims.has(c)) claims.set(c, `L2 table ${hexOff(table)} entry ${entry}`);
    }
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0, at = 0; at + 8 <= buf.length; i++, at += geo.l2EntrySize) {
    const hi = view.getUint32(at);
    const lo = view.getUint32(at + 4);
    if (hi === 0 && lo === 0) continue;
    const type = classifyL2(hi, lo, geo.extendedL2, externalData);
    if (type === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, geo);
      if (d.offset < fileSize) claim(Math.floor(d.offset / cs), Math.floor((d.offset + d.size - 1) / cs), i);
    } else if ((type === ClusterType.Normal || type === ClusterType.ZeroAlloc) && !externalData) {
      const off = l2Offset(hi, lo);
      // An unaligned offset touches two clusters, as QEMU counts it.
      if (off < fileSize) claim(Math.floor(off / cs), Math.floor((off + cs - 1) / cs), i);
    }
  }
}
