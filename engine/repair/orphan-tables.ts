/**
 * Leaked clusters that still read as this image's tables: the footprint a table leaves when the one
 * pointer to it is damaged. Used to re-link them instead of freeing them and the data they map.
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import type { RefWalk } from './references.js';

/** A leaked cluster that is no structure the walk knows. */
function leakedUnknown(w: RefWalk, c: number): boolean {
  return !(
    w.refs[c] !== 0 ||
    w.onDiskUnknown[c] ||
    w.onDisk[c]! < 1 ||
    w.metadata.has(c) ||
    w.oldRefcountClusters.has(c)
  );
}

/** Clusters 1 .. hostClusters-1 whose refcount differs from their references (every leak is one). */
function leakedCandidates(w: RefWalk): number[] {
  const out: number[] = [];
  for (const c of w.mismatched) if (c >= 1 && c < w.hostClusters) out.push(c);
  return out;
}

/**
 * Leaked clusters that still look like an L2 table of this image: every entry is empty or a valid
 * descriptor inside the file, at least one maps data, and every data cluster it maps is itself
 * unaccounted for (refcount above its references) — the footprint a table leaves when the one
 * pointer to it is damaged.
 */
export async function findOrphanL2(img: Qcow2Image, w: RefWalk): Promise<number[]> {
  const out: number[] = [];
  if (img.geo.extendedL2) return out;
  const cs = img.clusterSize;
  for (const c of leakedCandidates(w)) {
    if (!leakedUnknown(w, c)) continue;
    const t = await readPadded(img.io, c * cs, cs);
    if (looksLikeL2(t, img, w, c)) out.push(c);
  }
  return out;
}

/**
 * Whether cluster `c` reads as a snapshot's L1 table of `size` entries: leaked, every entry empty
 * or an aligned L2 table offset whose cluster has more refcount than references (the snapshot's
 * missing reference), nothing past `size`, at least one entry.
 */
export async function looksLikeSnapshotL1(img: Qcow2Image, w: RefWalk, c: number, size: number): Promise<boolean> {
  const cs = img.clusterSize;
  if (c < 1 || c >= w.hostClusters || !leakedUnknown(w, c)) return false;
  const t = await readPadded(img.io, c * cs, cs);
  let used = 0;
  for (let i = 0; i < cs / 8; i++) {
    const hi = u32(t, i * 8);
    const lo = u32(t, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    if (i >= size || hi & C.L1E_RESERVED_MASK_HI || lo & C.L1E_RESERVED_MASK_LO) return false;
    const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
    const x = off / cs;
    if (off % cs !== 0 || x === c || x >= w.hostClusters || w.onDiskUnknown[x] || !(w.onDisk[x]! > w.refs[x]!))
      return false;
    used++;
  }
  return used > 0;
}

/** Leaked clusters that read as this image's active L1 table: entries empty or pointing at `l2s`. */
export async function findOrphanL1(img: Qcow2Image, w: RefWalk, l2s: Set<number>): Promise<number[]> {
  const out: number[] = [];
  const cs = img.clusterSize;
  const n = img.header.l1Size;
  for (const c of leakedCandidates(w)) {
    // (An L1 table also passes the L2 test — its entries have the same shape — so l2s may contain it.)
    if (!leakedUnknown(w, c)) continue;
    const t = await readPadded(img.io, c * cs, cs);
    let used = 0;
    let ok = true;
    for (let i = 0; i < cs / 8 && ok; i++) {
      const hi = u32(t, i * 8);
      const lo = u32(t, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if (i >= n || hi & C.L1E_RESERVED_MASK_HI || lo & C.L1E_RESERVED_MASK_LO) {
        ok = false;
        break;
      }
      const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
      if (off % cs !== 0 || off / cs === c || !l2s.has(off / cs)) ok = false;
      used++;
    }
    if (ok && used > 0) out.push(c);
  }
  return out;
}

export function looksLikeL2(t: Uint8Array, img: Qcow2Image, w: RefWalk, self: number): boolean {
  const cs = img.clusterSize;
  let data = 0;
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(t, j * 8);
    const lo = u32(t, j * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    const type = classifyL2(hi, lo, false, img.hasExternalData);
    if (type === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, img.geo);
      if (d.offset + d.size > w.fileSize) return false;
      continue;
    }
    if (type === ClusterType.ZeroPlain) {
      if (hi !== 0 || lo !== 1) return false;
      continue;
    }
    if (type === ClusterType.Unallocated) return false;
    if (hi & C.L2E_STD_RESERVED_MASK_HI || lo & C.L2E_STD_RESERVED_MASK_LO) return false;
    const off = l2Offset(hi, lo);
    if (off % cs !== 0 || off >= w.fileSize || off === 0) return false;
    const x = off / cs;
    if (x === self || w.onDiskUnknown[x] || !(w.onDisk[x]! > w.refs[x]!)) return false;
    data++;
  }
  return data > 0;
}
