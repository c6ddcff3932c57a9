/**
 * Lost L2 tables for the repair: clusters that validate as L2 tables of this image and still map
 * data, but that no active L1 entry points at (the active L1 entry, or the whole L1 table, was
 * zeroed). They are not leaks: freeing them frees the guest's data. The repair picks the candidates
 * from its own walk; which of them are lost tables is the checker's detector's decision.
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { examineCluster, findLostTables, type TableEvidence } from '../check/lost-tables.js';
import { looksLikeRefcountBlock } from '../format/cluster-content.js';
import { readPadded } from '../io/positional-io.js';
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
 * L2 tables the active tree lost, decided by the checker's detector (check/lost-tables.ts) so the
 * check and the repair cannot disagree: leaked clusters whose content validates as an L2 table
 * still mapping data nothing else maps, and tables only snapshots still reference at a slot the
 * active L1 has empty while the refcount keeps the active tree's share.
 */
export async function findLostL2Tables(img: Qcow2Image, walk: RefWalk): Promise<LostL2Table[]> {
  const cs = img.clusterSize;
  const { slots, l1Clusters } = await snapshotL1s(img, walk);
  const ctx = {
    clusterSize: cs,
    fileSize: walk.fileSize,
    extendedL2: img.geo.extendedL2,
    refcountOrder: img.geo.refcountOrder,
  };
  const evidence: TableEvidence[] = [];
  const content = new Map<number, Uint8Array>();
  const { refs, onDisk } = walk;
  for (const c of walk.mismatched) {
    if (c < 1) continue;
    if (c >= walk.hostClusters) break;
    // Both kinds of candidate count more on disk than the walk found: the cheap test goes first.
    if (!(onDisk[c]! > refs[c]!)) continue;
    if (walk.onDiskUnknown[c] || walk.metadata.has(c) || walk.oldRefcountClusters.has(c) || l1Clusters.has(c)) continue;
    const leaked = walk.refs[c] === 0 && walk.onDisk[c]! >= 1;
    const snapshotOnly = walk.allL2.has(c * cs) && !walk.activeL2.has(c * cs) && walk.onDisk[c]! > walk.refs[c]!;
    if (!leaked && !snapshotOnly) continue;
    const snapshotSlots = slots.get(c * cs) ?? [];
    const emptySlots = snapshotSlots.filter((i) => activeSlotEmpty(img, i));
    // A snapshot's own table (its slot in the active tree holds another table) is no loss of the
    // active tree: at most a leak, or the business of the snapshot's repair.
    if ((!leaked || snapshotSlots.length) && !emptySlots.length) continue;
    const t = await readPadded(img.io, c * cs, cs);
    const e = examineCluster(t, c, ctx);
    if (e?.shape !== 'pointer-table') continue;
    if (!leaked) e.snapshotSlot = emptySlots[0]!;
    else if (e.copied === 0 && !e.compressed && (await targetsReadAsRefcountBlocks(img, e, ctx))) continue;
    evidence.push(e);
    content.set(c, t);
  }
  if (!evidence.length) return [];
  const span = img.geo.l2Entries * cs;
  const freeL1Slots: number[] = [];
  for (let i = 0; i < img.header.l1Size && i * span < img.virtualSize; i++)
    if (activeSlotEmpty(img, i)) freeL1Slots.push(i);
  const lost = findLostTables(evidence, {
    clusterSize: cs,
    l2Entries: img.geo.l2Entries,
    virtualSize: img.virtualSize,
    unreferencedIn: (start, count) => {
      let n = 0;
      for (let k = start; k < start + count && k < walk.hostClusters; k++) if (walk.refs[k] === 0) n++;
      return n;
    },
    liveMetadataIn: (start, count) => {
      for (let k = start; k < start + count; k++) if (walk.metadata.has(k) || walk.allL2.has(k * cs)) return true;
      return false;
    },
    liveRole: (k) =>
      walk.allL2.has(k * cs)
        ? 'l2'
        : /L1/.test(walk.metadata.get(k) ?? '')
          ? 'l1'
          : walk.metadata.has(k)
            ? 'metadata'
            : undefined,
    freeL1Slots,
  });
  return lost
    .filter((t) => t.kind === 'l2')
    .map((t) => ({
      cluster: t.cluster,
      dataClusters: mappedClusters(content.get(t.cluster)!, img, walk),
      snapshotSlots: slots.get(t.cluster * cs) ?? [],
    }));
}

/** A pointer table without COPIED flags whose first targets read as refcount blocks: a lost refcount table. */
async function targetsReadAsRefcountBlocks(
  img: Qcow2Image,
  e: TableEvidence,
  ctx: { clusterSize: number; fileSize: number; extendedL2: boolean; refcountOrder: number },
): Promise<boolean> {
  if (!e.targets.length) return false;
  for (const k of e.targets.subarray(0, 4)) {
    const block = await readPadded(img.io, k * ctx.clusterSize, ctx.clusterSize);
    if (!looksLikeRefcountBlock(block, 0, { ...ctx, targetLimit: ctx.fileSize })) return false;
  }
  return true;
}

/** Whether slot i of the active L1 table exists and is zero. */
export function activeSlotEmpty(img: Qcow2Image, i: number): boolean {
  return i < img.header.l1Size && u32(img.l1, i * 8) === 0 && u32(img.l1, i * 8 + 4) === 0;
}

/**
 * The snapshots' L1 tables: their clusters, for each L2 table offset the L1 slots at which they
 * hold it, and for each slot the tables held there. A damaged entry's table is read where it most likely is (the cluster an unaligned offset
 * falls in, one cluster of an absurd size): its tables are the snapshot's, not lost ones.
 */
export async function snapshotL1s(
  img: Qcow2Image,
  walk: RefWalk,
): Promise<{ slots: Map<number, number[]>; bySlot: Map<number, number[]>; l1Clusters: Set<number> }> {
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
  const bySlot = new Map<number, number[]>();
  for (const [off, heldAt] of slots)
    for (const i of heldAt) {
      const l = bySlot.get(i);
      if (l) l.push(off);
      else bySlot.set(i, [off]);
    }
  return { slots, bySlot, l1Clusters };
}

/** Host clusters the table maps: standard data and the clusters compressed streams touch. */
function mappedClusters(t: Uint8Array, img: Qcow2Image, walk: RefWalk): number[] {
  const cs = img.clusterSize;
  const step = img.geo.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const out: number[] = [];
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(t, j * step);
    const lo = u32(t, j * step + 4);
    const type = classifyL2(hi, lo, img.geo.extendedL2, img.hasExternalData);
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
