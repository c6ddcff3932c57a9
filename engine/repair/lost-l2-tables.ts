/**
 * Lost L2 tables: clusters that validate as L2 tables of this image and still map data, but that no
 * active L1 entry points at (the active L1 entry, or the whole L1 table, was zeroed). They are not
 * leaks: freeing them frees the guest's data. One small detector with a plain signature, so it can
 * be unified with the checker's `lost-table` finding.
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import { looksLikeL2 } from './orphan-tables.js';
import type { RefWalk } from './references.js';

export interface LostL2Table {
  /** Host cluster of the table. */
  cluster: number;
  /** Host clusters of the data it maps (standard and compressed). */
  dataClusters: number[];
  /** L1 slots at which surviving snapshot L1 tables hold this table (empty when none does). */
  snapshotSlots: number[];
}

/**
 * L2 tables the active tree lost: leaked clusters that read as L2 tables whose data is unaccounted
 * for, and tables only snapshots still reference while the refcount keeps the active tree's share.
 */
export async function findLostL2Tables(img: Qcow2Image, walk: RefWalk): Promise<LostL2Table[]> {
  if (img.geo.extendedL2) return [];
  const cs = img.clusterSize;
  const { slots, l1Clusters } = await snapshotL1s(img, walk);
  const out: LostL2Table[] = [];
  for (let c = 1; c < walk.hostClusters; c++) {
    if (walk.onDiskUnknown[c] || walk.metadata.has(c) || walk.oldRefcountClusters.has(c) || l1Clusters.has(c)) continue;
    const leaked = walk.refs[c] === 0 && walk.onDisk[c]! >= 1;
    const snapshotOnly = walk.allL2.has(c * cs) && !walk.activeL2.has(c * cs) && walk.onDisk[c]! > walk.refs[c]!;
    if (!leaked && !snapshotOnly) continue;
    const snapshotSlots = slots.get(c * cs) ?? [];
    // A snapshot's own table (its slot in the active tree holds another table) is no loss of the
    // active tree: at most a leak, or the business of the snapshot's repair.
    if ((!leaked || snapshotSlots.length) && !snapshotSlots.some((i) => activeSlotEmpty(img, i))) continue;
    const t = await readPadded(img.io, c * cs, cs);
    if (leaked && (!looksLikeL2(t, img, walk, c) || !writtenByActiveTree(t, img))) continue;
    const dataClusters = mappedClusters(t, img, walk);
    // What it points at are L2 tables: it is an L1 table (a snapshot's, most likely), not an L2 table.
    if (dataClusters.some((x) => walk.allL2.has(x * cs))) continue;
    out.push({ cluster: c, dataClusters, snapshotSlots });
  }
  return out;
}

/** Whether slot i of the active L1 table exists and is zero. */
export function activeSlotEmpty(img: Qcow2Image, i: number): boolean {
  return i < img.header.l1Size && u32(img.l1, i * 8) === 0 && u32(img.l1, i * 8 + 4) === 0;
}

/**
 * An active L2 table QEMU wrote carries OFLAG_COPIED on its standard entries (refcount 1) or holds
 * compressed clusters; tables of other kinds that look alike (a bitmap table: aligned offsets, no
 * flags) carry neither.
 */
function writtenByActiveTree(t: Uint8Array, img: Qcow2Image): boolean {
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(t, j * 8);
    if (hi & (C.OFLAG_COPIED_HI | C.OFLAG_COMPRESSED_HI)) return true;
  }
  return false;
}

/**
 * The snapshots' L1 tables: their clusters, and for each L2 table offset the L1 slots at which they
 * hold it. A damaged entry's table is read where it most likely is (the cluster an unaligned offset
 * falls in, one cluster of an absurd size): its tables are the snapshot's, not lost ones.
 */
async function snapshotL1s(
  img: Qcow2Image,
  walk: RefWalk,
): Promise<{ slots: Map<number, number[]>; l1Clusters: Set<number> }> {
  const slots = new Map<number, number[]>();
  const l1Clusters = new Set<number>();
  const cs = img.clusterSize;
  for (const s of walk.snapshots) {
    const at = Math.floor(s.l1TableOffset / cs) * cs;
    if (s.l1Size === 0 || at >= walk.fileSize) continue;
    const size = s.l1TableOffset % cs === 0 && s.l1Size * 8 <= C.QCOW_MAX_L1_SIZE ? s.l1Size : cs / 8;
    const bytes = Math.min(size, 1 << 20) * 8;
    for (let c = at / cs; c < Math.ceil((at + bytes) / cs); c++) l1Clusters.add(c);
    const l1 = await readPadded(img.io, at, bytes);
    for (let i = 0; i < l1.length / 8; i++) {
      const off = l1Offset(u32(l1, i * 8), u32(l1, i * 8 + 4));
      if (!off) continue;
      const l = slots.get(off) ?? [];
      if (!l.includes(i)) l.push(i);
      slots.set(off, l);
    }
  }
  return { slots, l1Clusters };
}

function mappedClusters(t: Uint8Array, img: Qcow2Image, walk: RefWalk): number[] {
  const cs = img.clusterSize;
  const out: number[] = [];
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(t, j * 8);
    const lo = u32(t, j * 8 + 4);
    const type = classifyL2(hi, lo, false, img.hasExternalData);
    if (type === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, img.geo);
      for (let x = Math.floor(d.offset / cs); x <= Math.floor((d.offset + d.size - 1) / cs); x++) out.push(x);
    } else if (type === ClusterType.Normal || type === ClusterType.ZeroAlloc) {
      const off = l2Offset(hi, lo);
      if (off % cs === 0 && off < walk.fileSize && off > 0) out.push(off / cs);
    }
  }
  return out;
}
