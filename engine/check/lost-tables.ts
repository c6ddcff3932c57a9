// Lost tables: clusters no live structure refers to (leaked, or free with content) whose content
// validates as a table still pointing at something — an L2 table mapping data, an L1 table
// pointing at L2 tables, a snapshot table naming an L1 table. They are not leaks: freeing them
// throws the data they map away. Pure (no I/O): the checker and the repair planner both call it.
//
// API, in two steps:
//   examineCluster(content: Uint8Array, cluster: number, ctx: LostTableContext): TableEvidence | undefined
//     What one unreferenced cluster's content says it is (a compact summary; the content can be dropped).
//   findLostTables(evidence: TableEvidence[], world: LostTableWorld): LostTable[]
//     Decides which candidates are tables still pointing at data, with the data they map and, where it
//     is certain, the guest range (a lost L1 holding the table at slot i, or the only free active L1
//     slot for the only lost L2 table). Sorted by host offset.
import {
  type ClassifyContext,
  isZero,
  looksLikeSnapshotTable,
  pointerTableSummary,
} from '../format/cluster-content.js';
import * as C from '../format/constants.js';
import { isStaleRefcountBlock } from './stale-refcount-block.js';

export interface LostTableContext {
  clusterSize: number;
  fileSize: number;
  extendedL2: boolean;
  refcountOrder: number;
  /** Internal snapshots (bounds the refcounts a stale refcount block of this image can hold). */
  snapshots?: number;
}

/** A run of consecutive host clusters. */
export interface ClusterRange {
  start: number;
  count: number;
}

/** What an unreferenced cluster's content says (see examineCluster). */
export interface TableEvidence {
  cluster: number;
  shape: 'pointer-table' | 'snapshot-table';
  /** Pointer tables: the standard targets' host clusters, in entry order (compact: tables hold thousands). */
  targets: Float64Array;
  /** The entry index of each target. */
  targetIndexes: Uint32Array;
  /** Pointer tables: compressed entries (possible only in an L2 table). */
  compressed: number;
  /** Pointer tables: entries with the zero flag (possible only in an L2 table). */
  zeroFlags: number;
  /** Pointer tables: entries with COPIED (L1 and L2 tables; never a refcount or bitmap table). */
  copied: number;
  /** Snapshot tables: the first entry's L1 table (host cluster). */
  l1Cluster?: number;
  /**
   * Set by the caller for a live table only snapshots refer to, held by a surviving snapshot L1 at
   * this slot while the active slot is empty and the refcount still counts the active tree's share:
   * the active disk lost it even though nothing is unreferenced.
   */
  snapshotSlot?: number;
}

/** What the live metadata says about the clusters the candidates point at. */
export interface LostTableWorld {
  clusterSize: number;
  /** Entries per L2 table. */
  l2Entries: number;
  virtualSize: number;
  /** How many of host clusters [start, start+count) no live structure refers to. */
  unreferencedIn(start: number, count: number): number;
  /** Whether a live metadata cluster (any table, refcount block, header, ...) lies in [start, start+count). */
  liveMetadataIn(start: number, count: number): boolean;
  /** What the live walk counted cluster k as: an L2 table, an L1 table, other metadata, or data/free. */
  liveRole(cluster: number): 'l2' | 'l1' | 'metadata' | undefined;
  /** Active L1 slots that are zero and inside the disk. */
  freeL1Slots: number[];
}

export interface LostTable {
  kind: 'l2' | 'l1' | 'snapshot-table';
  cluster: number;
  /** Data clusters the table maps (for an L1: through its lost L2 tables), and how many nothing else maps. */
  dataClusters: number;
  unreferencedDataClusters: number;
  compressedEntries: number;
  dataRanges: ClusterRange[];
  /** L2 tables an L1 table points at. */
  l2Tables?: number;
  /** The active L1 slot the table belongs to, when certain, and the guest bytes it maps. */
  l1Index?: number;
  guestStart?: number;
  guestLength?: number;
  /** How the guest place is known: a lost L1 holds it, the only free slot, or a snapshot's L1 holds it there. */
  placedBy?: 'lost-l1' | 'only-free-slot' | 'snapshot-l1';
  /** For a table found through a lost L1: that L1 table's cluster. */
  viaL1?: number;
}

/** What one unreferenced cluster's content says it is, or undefined for data, zeros and anything else. */
export function examineCluster(content: Uint8Array, cluster: number, ctx: LostTableContext): TableEvidence | undefined {
  const cs = ctx.clusterSize;
  if (content.length < cs || isZero(content, 0, cs)) return undefined;
  const classify: ClassifyContext = { ...ctx, targetLimit: ctx.fileSize };
  const offset = cluster * cs;
  const summary = pointerTableSummary(content, 0, classify, offset);
  if (summary && summary.beyondEof === 0) {
    const step = ctx.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
    const clusters = new Float64Array(summary.entries);
    const indexes = new Uint32Array(summary.entries);
    let n = 0;
    const dv = new DataView(content.buffer, content.byteOffset, cs);
    for (let p = 0; p < cs; p += step) {
      const hi = dv.getUint32(p);
      const lo = dv.getUint32(p + 4);
      if ((hi | lo) === 0 || hi & C.OFLAG_COMPRESSED_HI) continue;
      const target = (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
      if (target === 0) continue;
      clusters[n] = target / cs;
      indexes[n++] = p / step;
    }
    return {
      cluster,
      shape: 'pointer-table',
      targets: clusters.subarray(0, n),
      targetIndexes: indexes.subarray(0, n),
      compressed: summary.compressed,
      zeroFlags: summary.zeroFlag,
      copied: summary.copied,
    };
  }
  if (looksLikeSnapshotTable(content, 0, { ...classify, targetLimit: ctx.fileSize })) {
    const dv = new DataView(content.buffer, content.byteOffset, cs);
    const l1 = dv.getUint32(0) * 0x1_0000_0000 + dv.getUint32(4);
    return {
      cluster,
      shape: 'snapshot-table',
      targets: new Float64Array(0),
      targetIndexes: new Uint32Array(0),
      compressed: 0,
      zeroFlags: 0,
      copied: 0,
      l1Cluster: l1 / cs,
    };
  }
  return undefined;
}

/**
 * Whether an unreferenced cluster's content is data: not zeros, no table (examineCluster found none)
 * and no stale refcount block that could count this file (stale-refcount-block.ts).
 */
export function holdsData(content: Uint8Array, ctx: LostTableContext): boolean {
  const cs = ctx.clusterSize;
  if (content.length < cs || isZero(content, 0, cs)) return false;
  return !isStaleRefcountBlock(content, ctx);
}

/** Which candidates are tables still pointing at data (see the file's head). */
export function findLostTables(evidence: readonly TableEvidence[], world: LostTableWorld): LostTable[] {
  const candidateTables = Float64Array.from(
    evidence.filter((e) => e.shape === 'pointer-table').map((e) => e.cluster),
  ).sort();
  // L2 tables first: a pointer table whose targets are distinct data clusters, some of them mapped by nothing else.
  const l2 = new Map<number, LostTable>();
  for (const e of evidence) {
    if (e.shape !== 'pointer-table') continue;
    const table = asLostL2(e, candidateTables, world);
    if (!table) continue;
    l2.set(e.cluster, table);
    if (e.snapshotSlot !== undefined) {
      placeGuest(table, e.snapshotSlot, world);
      table.placedBy = 'snapshot-l1';
    }
  }
  // L1 tables: every target an L2 table (a lost one or a live one), at least one lost.
  const l1: LostTable[] = [];
  for (const e of evidence) {
    if (e.shape !== 'pointer-table' || l2.has(e.cluster) || e.compressed || e.zeroFlags || !e.targets.length) continue;
    if (!e.targets.every((t) => l2.has(t) || world.liveRole(t) === 'l2')) continue;
    const mine: { index: number; cluster: number }[] = [];
    e.targets.forEach((t, i) => {
      if (l2.has(t)) mine.push({ index: e.targetIndexes[i]!, cluster: t });
    });
    if (!mine.length) continue;
    const table: LostTable = emptyTable('l1', e.cluster);
    table.l2Tables = e.targets.length;
    const ranges: ClusterRange[] = [];
    for (const t of mine) {
      const child = l2.get(t.cluster)!;
      table.dataClusters += child.dataClusters;
      table.unreferencedDataClusters += child.unreferencedDataClusters;
      table.compressedEntries += child.compressedEntries;
      ranges.push(...child.dataRanges);
      placeGuest(child, t.index, world);
      child.placedBy = 'lost-l1';
      child.viaL1 = e.cluster;
    }
    table.dataRanges = mergeRanges(ranges);
    l1.push(table);
  }
  placeOnlyFreeSlot(l2, world);
  // Snapshot tables: the first entry names an L1 table that is live or lost.
  const snapshotTables: LostTable[] = [];
  const lostL1 = new Set(l1.map((t) => t.cluster));
  for (const e of evidence) {
    if (e.shape !== 'snapshot-table' || e.l1Cluster === undefined) continue;
    if (!lostL1.has(e.l1Cluster) && world.liveRole(e.l1Cluster) !== 'l1') continue;
    snapshotTables.push(emptyTable('snapshot-table', e.cluster));
  }
  return [...l2.values(), ...l1, ...snapshotTables].sort((a, b) => a.cluster - b.cluster);
}

function emptyTable(kind: LostTable['kind'], cluster: number): LostTable {
  return { kind, cluster, dataClusters: 0, unreferencedDataClusters: 0, compressedEntries: 0, dataRanges: [] };
}

/**
 * An L2 table: distinct targets, none of them live metadata or another candidate table, some
 * unreferenced (a table a snapshot still holds needs none: its data is shared with the snapshot).
 */
function asLostL2(e: TableEvidence, candidateTables: Float64Array, world: LostTableWorld): LostTable | undefined {
  if (!e.targets.length && !e.compressed) return undefined;
  const held = e.snapshotSlot !== undefined;
  const sorted = isAscending(e.targets) ? e.targets : Float64Array.from(e.targets).sort();
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) return undefined; // mapped twice
  const ranges = toRanges(sorted);
  let unreferenced = 0;
  for (const r of ranges) {
    if (r.start === 0 || world.liveMetadataIn(r.start, r.count)) return undefined;
    if (!held && anyIn(candidateTables, r.start, r.start + r.count)) return undefined;
    unreferenced += world.unreferencedIn(r.start, r.count);
  }
  if (unreferenced === 0 && !held) return undefined;
  const table = emptyTable('l2', e.cluster);
  table.dataClusters = e.targets.length;
  table.unreferencedDataClusters = unreferenced;
  table.compressedEntries = e.compressed;
  table.dataRanges = ranges;
  return table;
}

function isAscending(a: Float64Array): boolean {
  for (let i = 1; i < a.length; i++) if (a[i]! <= a[i - 1]!) return false;
  return true;
}

/** Whether the sorted array holds a value in [from, to). */
export function anyIn(sorted: ArrayLike<number>, from: number, to: number): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < from) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo]! < to;
}

function placeGuest(table: LostTable, slot: number, world: LostTableWorld): void {
  const span = world.l2Entries * world.clusterSize;
  const start = slot * span;
  if (start >= world.virtualSize) return;
  table.l1Index = slot;
  table.guestStart = start;
  table.guestLength = Math.min(span, world.virtualSize - start);
}

/** The only lost L2 table not placed otherwise, and the only free active L1 slot: that is its place. */
function placeOnlyFreeSlot(l2: ReadonlyMap<number, LostTable>, world: LostTableWorld): void {
  const unplaced = [...l2.values()].filter((t) => t.placedBy === undefined);
  const taken = new Set([...l2.values()].map((t) => t.l1Index));
  const free = world.freeL1Slots.filter((i) => !taken.has(i));
  if (unplaced.length !== 1 || free.length !== 1) return;
  placeGuest(unplaced[0]!, free[0]!, world);
  unplaced[0]!.placedBy = 'only-free-slot';
}

/** Runs sorted and joined where they touch. */
function mergeRanges(ranges: ClusterRange[]): ClusterRange[] {
  const out: ClusterRange[] = [];
  for (const r of [...ranges].sort((a, b) => a.start - b.start)) {
    const last = out[out.length - 1];
    if (last && r.start <= last.start + last.count) last.count = Math.max(last.count, r.start + r.count - last.start);
    else out.push({ ...r });
  }
  return out;
}

/** Runs of the given clusters (sorted ascending). */
export function toRanges(sorted: ArrayLike<number>): ClusterRange[] {
  const out: ClusterRange[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const k = sorted[i]!;
    const last = out[out.length - 1];
    if (last && k === last.start + last.count) last.count++;
    else if (!last || k >= last.start + last.count) out.push({ start: k, count: 1 });
  }
  return out;
}
