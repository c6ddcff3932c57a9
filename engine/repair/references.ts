/**
 * The repair's view of an image: who references which host cluster, counted by QEMU's rules for
 * every *valid* pointer, and the list of pointers that are not valid (which QEMU would still follow
 * or count, and we never do: an unaligned table is never interpreted). The planner runs this walk on
 * the image as it is, and again on an overlay of the image as it will be after the pointer fixes, to
 * get the final reference counts.
 *
 * The walk itself is the image's one metadata traversal; what is here is the repair's policy: which
 * pointers are valid, what QEMU would count for the others, and which referrers to remember.
 */
import * as C from '../format/constants.js';
import { getRefcounts } from '../format/refcount.js';
import type { SnapshotEntry } from '../format/snapshot.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { BufferPool, readTables, refblockReference, sourceOf, traverse } from '../image/traversal/index.js';
import type { Layer, Reference, TraversalVisitor } from '../image/traversal/index.js';
import { readSnapshotsForRepair } from './snapshots.js';
import { type ClusterCounts, countsArray } from './cluster-counts.js';
import { ALLOC_MARGIN, RefCounter, type RefCounts } from './references-counter.js';
import { l2EntryVisitor, l2TableVisitor } from './references-l2.js';

/** A reference to a host cluster from a table entry (or a structure). */
export interface Ref {
  /** Byte address of the 8-byte entry in the file (-1 for header-level structures). */
  entry: number;
  /** 'l1' = active L1 → L2 table, 'l2' = active L2 → data, 'snap-l1', 'snap-l2', 'meta'. */
  kind: 'l1' | 'l2' | 'snap-l1' | 'snap-l2' | 'meta';
  /** Guest offset mapped (data refs), or covered start (L1 refs). */
  guest: number;
  /** For 'meta': which structure. */
  what?: string;
}

export type BadKind =
  | 'l1-unaligned'
  | 'l1-beyond-eof'
  | 'l1-into-metadata'
  | 'l1-reserved-bits'
  | 'l1-zero-offset'
  | 'l1-table-beyond-eof'
  | 'l2-reserved-bits'
  | 'l2-prealloc-unaligned'
  | 'l2-data-unaligned'
  | 'l2-beyond-eof'
  | 'l2-compressed-copied'
  | 'l2-compressed-beyond-eof'
  | 'l2-compressed-into-metadata'
  | 'l2-unsupported'
  | 'snapshot-l1-unaligned'
  | 'snapshot-l1-too-large'
  | 'snapshot-l1-beyond-eof';

export interface BadEntry {
  kind: BadKind;
  /** Byte address of the entry (for snapshot problems: of the snapshot table entry). */
  entry: number;
  hi: number;
  lo: number;
  /** Whether the entry belongs to the active tree. */
  active: boolean;
  /** The table (or snapshot L1) it sits in, and its index. */
  table: number;
  index: number;
  snapshotId?: string;
  /** Clusters QEMU would count for this entry (its misread): never lowered while it is unresolved. */
  qemuClusters: number[];
}

export type RefblockStatus = 'none' | 'ok' | 'reserved-bits' | 'unaligned' | 'beyond-eof';

export interface RefWalk {
  clusterSize: number;
  fileSize: number;
  /** ceil(fileSize / clusterSize). */
  hostClusters: number;
  /** References found per host cluster (valid pointers only). Length ≥ hostClusters. */
  refs: RefCounts;
  /** On-disk refcount per host cluster (0 where no valid refblock covers it), at the refcount width. */
  onDisk: ClusterCounts;
  /**
   * 1 where the on-disk refcount could not be read (its refblock pointer is invalid). Allocated only
   * when some count is unknown: shorter than onDisk (usually empty), and known past its end.
   */
  onDiskUnknown: Uint8Array;
  /**
   * The clusters whose on-disk refcount differs from the references found, or is unknown, in
   * ascending order: the few a repair looks at, so no phase scans every cluster of the image.
   */
  mismatched: Uint32Array;
  /** Status of every refcount table entry. */
  refblocks: Array<{ index: number; offset: number; status: RefblockStatus }>;
  /** Clusters occupied by the refcount structure as it is on disk (reftable + refblock pointers, valid or not). */
  oldRefcountClusters: Set<number>;
  /** Clusters that hold metadata structures (header, L1, reftable, refblocks, snapshot table and L1s, bitmaps). */
  metadata: Map<number, string>;
  /** Referrers for clusters referenced more than once. */
  multi: Map<number, Ref[]>;
  /** First referrer of each referenced cluster (only tracked for L2 tables and data). */
  first: Map<number, Ref>;
  bad: BadEntry[];
  /** Active L1 entries that point to a valid L2 table: entry address → L2 offset. */
  activeL1: Array<{ entry: number; index: number; hi: number; lo: number; l2: number }>;
  /** L2 tables of the active tree (offset → the L1 entry addresses pointing to it). */
  activeL2: Map<number, number[]>;
  /** All L2 tables reachable (active or snapshot). */
  allL2: Set<number>;
  snapshots: SnapshotEntry[];
  snapshotTableBytes: number;
  /** Set when the snapshot table itself cannot be read as QEMU would (with QEMU's reason). */
  snapshotTableError?: string;
  /** v3 entries with less than 16 bytes of extra data. */
  incompleteSnapshots: number[];
  /** Entries with more than 1024 bytes of extra data (read truncated, as QEMU's repair does). */
  oversizeSnapshots: Array<{ index: number; size: number }>;
  /** Bitmaps extension present with the autoclear bit clear: its clusters are unaccounted. */
  staleBitmaps: boolean;
}

export { ALLOC_MARGIN } from './references-counter.js';

/**
 * Walk every structure of `img` and count references. Reads each table once per pass; memory is a
 * few bytes per host cluster. Two passes: the first counts (and tracks only L1 → L2 references and
 * guest data mapped onto metadata); the second, needed only when some cluster has more than one
 * reference, walks again and records the referrers of just those clusters.
 */
export async function walkReferences(img: Qcow2Image): Promise<RefWalk> {
  const k = new RefCounter(img);
  const refblocks = refcountStructure(img, k);
  k.markMeta(0, k.cs, 'header');
  k.count(0, k.cs);
  const h = img.header;
  k.markMeta(h.l1TableOffset, h.l1Size * 8, 'active L1 table');
  if (h.refcountTableClusters) k.markMeta(h.refcountTableOffset, h.refcountTableClusters * k.cs, 'refcount table');
  for (const rb of refblocks) if (rb.status === 'ok') k.markMeta(rb.offset, k.cs, 'refcount block');
  const snap = await snapshotLayers(img, k);

  // Header-level structures counted once, after both passes (as they never change who is shared).
  const late: Array<{ offset: number; length: number; what?: string }> = [];
  const walk = (): Promise<void> =>
    traverse(sourceOf(img), passVisitor(img, k, late), {
      snapshots: { layers: snap.layers, tableBytes: snap.table.byteLength },
      sharedL2: 'repeat',
    });
  await walk();
  if (k.markShared()) {
    k.pass = 2;
    await walk();
    k.pass = 1;
  }
  if (snap.table.byteLength) k.count(h.snapshotsOffset, snap.table.byteLength);
  if (h.refcountTableClusters) k.count(h.refcountTableOffset, h.refcountTableClusters * k.cs);
  for (const l of late) {
    k.count(l.offset, l.length);
    if (l.what) k.markMeta(l.offset, l.length, l.what);
  }
  for (const rb of refblocks) if (rb.status === 'ok') k.count(rb.offset, k.cs);
  const { onDisk, onDiskUnknown } = await readOnDisk(img, k, refblocks);
  return {
    mismatched: findMismatched({ refs: k.refs, onDisk, onDiskUnknown }),
    clusterSize: k.cs,
    fileSize: k.fileSize,
    hostClusters: k.hostClusters,
    refs: k.refs,
    onDisk,
    onDiskUnknown,
    refblocks,
    oldRefcountClusters: k.oldRefcountClusters,
    metadata: k.metadata,
    multi: k.multi,
    first: k.first,
    bad: k.bad,
    activeL1: k.activeL1,
    activeL2: k.activeL2,
    allL2: k.allL2,
    snapshots: snap.entries,
    snapshotTableBytes: snap.table.byteLength,
    ...(snap.table.error !== undefined ? { snapshotTableError: snap.table.error } : {}),
    incompleteSnapshots: snap.incomplete,
    oversizeSnapshots: snap.table.oversize,
    staleBitmaps: h.bitmaps !== undefined && (h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n,
  };
}

/** The refcount table's entries as they are on disk, and the clusters the structure occupies. */
function refcountStructure(img: Qcow2Image, k: RefCounter): RefWalk['refblocks'] {
  const h = img.header;
  const cs = k.cs;
  const first = Math.floor(h.refcountTableOffset / cs);
  for (let c = first; h.refcountTableClusters && c < first + h.refcountTableClusters; c++) k.oldRefcountClusters.add(c);
  const refblocks: RefWalk['refblocks'] = [];
  for (let i = 0; i < img.reftable.length / 8; i++) {
    const r = refblockReference(img.reftable, i, h.refcountTableOffset, k.fileSize, cs);
    if (!r) continue;
    const status: RefblockStatus = r.reserved
      ? 'reserved-bits'
      : r.problem === 'unaligned'
        ? 'unaligned'
        : r.offset >= k.fileSize
          ? 'beyond-eof'
          : 'ok';
    refblocks.push({ index: i, offset: r.offset, status });
    if (r.offset < k.fileSize) {
      const c = Math.floor(r.offset / cs);
      k.oldRefcountClusters.add(c);
      if (r.offset % cs !== 0 && c + 1 < k.hostClusters) k.oldRefcountClusters.add(c + 1);
    }
  }
  return refblocks;
}

/** The snapshot table read with the repair's rules, and the layers of its valid-looking entries. */
async function snapshotLayers(img: Qcow2Image, k: RefCounter) {
  const h = img.header;
  const table = await readSnapshotsForRepair(img);
  const entries = table.error !== undefined ? [] : table.entries;
  if (table.error !== undefined) table.byteLength = 0;
  if (table.byteLength) k.markMeta(h.snapshotsOffset, table.byteLength, 'snapshot table');
  const incomplete: number[] = [];
  const layers: Layer[] = entries.map((s, i) => {
    if (h.version === 3 && s.extraDataSize < C.SNAPSHOT_EXTRA_V3_MIN) incomplete.push(i);
    if (s.l1TableOffset % k.cs === 0 && s.l1Size * 8 <= C.QCOW_MAX_L1_SIZE && s.l1TableOffset < k.fileSize)
      k.markMeta(s.l1TableOffset, s.l1Size * 8, 'inactive L1 table');
    k.layerEntry.set(i, h.snapshotsOffset + s.tableOffset);
    return {
      l1Offset: s.l1TableOffset,
      l1Size: s.l1Size,
      snapshotId: s.id,
      snapshotIndex: i,
      entryOffset: h.snapshotsOffset + s.tableOffset,
    };
  });
  return { table, entries, layers, incomplete };
}

/** One pass's visitor: L1 tables, L1 entries and bitmaps here, L2 entries in references-l2.ts. */
function passVisitor(
  img: Qcow2Image,
  k: RefCounter,
  late: Array<{ offset: number; length: number; what?: string }>,
): TraversalVisitor {
  return {
    reference: (r: Reference): boolean => {
      switch (r.target) {
        case 'l1':
        case 'snapshot-l1':
          return l1Table(k, r);
        case 'l2':
          return l1Entry(img, k, r);
        case 'bitmap-directory':
        case 'bitmap-table':
        case 'bitmap-data':
          return k.pass === 1 && bitmapStructure(k, r, late);
        default:
          return false;
      }
    },
    l2Entry: l2EntryVisitor(img, k),
    l2Table: l2TableVisitor(img, k),
  };
}

/** The pointer to an L1 table (the header's, or a snapshot table entry's). */
function l1Table(k: RefCounter, r: Reference): boolean {
  const snapshot = r.from.kind === 'snapshot-table';
  if (snapshot) {
    const base = {
      entry: -1,
      hi: 0,
      lo: 0,
      active: false,
      table: r.from.table!,
      index: r.from.index!,
      snapshotId: r.from.snapshotId!,
      qemuClusters: [],
    };
    const layerEntry = k.layerEntry.get(r.from.index!);
    if (layerEntry !== undefined) base.entry = layerEntry;
    if (r.problem === 'unaligned') return k.refuse({ kind: 'snapshot-l1-unaligned', ...base });
    if (r.problem === 'too-large') return k.refuse({ kind: 'snapshot-l1-too-large', ...base });
    if (r.problem === 'beyond-eof') return k.refuse({ kind: 'snapshot-l1-beyond-eof', ...base });
  }
  if (r.length === 0) return false;
  if (k.count(r.offset, r.length)) return true;
  // The table lies past the end of the file: never read zeros as "no mappings" and free what it held.
  k.flag({
    kind: 'l1-table-beyond-eof',
    entry: -1,
    hi: 0,
    lo: 0,
    active: !snapshot,
    table: r.offset,
    index: -1,
    qemuClusters: [],
    ...(snapshot ? { snapshotId: r.from.snapshotId! } : {}),
  });
  return false;
}

/** An L1 entry: valid pointers to L2 tables are counted and followed, the others flagged. */
function l1Entry(img: Qcow2Image, k: RefCounter, r: Reference): boolean {
  const active = r.from.kind === 'l1';
  const i = r.from.index!;
  const entry = r.from.table! + i * 8;
  const base = {
    entry,
    hi: r.hi,
    lo: r.lo,
    active,
    table: r.from.table!,
    index: i,
    ...(r.from.snapshotId !== undefined ? { snapshotId: r.from.snapshotId } : {}),
  };
  const off = r.offset;
  const c = Math.floor(off / k.cs);
  if (r.reserved) k.flag({ kind: 'l1-reserved-bits', ...base, qemuClusters: [] });
  // Flags without an offset: QEMU's I/O treats the range as unallocated, its check counts cluster 0.
  if (r.problem === 'zero') return k.refuse({ kind: 'l1-zero-offset', ...base, qemuClusters: [0] });
  if (r.problem === 'unaligned') {
    const q = off < k.fileSize ? [c, c + 1] : [];
    return k.refuse({ kind: 'l1-unaligned', ...base, qemuClusters: q });
  }
  if (r.problem === 'beyond-eof') return k.refuse({ kind: 'l1-beyond-eof', ...base, qemuClusters: [] });
  const meta = k.metadata.get(c);
  if (meta !== undefined && meta !== 'L2 table')
    return k.refuse({ kind: 'l1-into-metadata', ...base, qemuClusters: [c] });
  k.count(off, k.cs);
  if (k.pass !== 1) return true;
  k.track(c, { entry, kind: active ? 'l1' : 'snap-l1', guest: i * img.geo.l1Coverage });
  k.allL2.add(off);
  if (active) {
    k.activeL1.push({ entry, index: i, hi: r.hi, lo: r.lo, l2: off });
    const a = k.activeL2.get(off);
    if (a) a.push(entry);
    else k.activeL2.set(off, [entry]);
  }
  return true;
}

/** Bitmap directory, tables and data: counted once, after both passes (QEMU's rules, no alignment test). */
function bitmapStructure(
  k: RefCounter,
  r: Reference,
  late: Array<{ offset: number; length: number; what?: string }>,
): boolean {
  if (r.target === 'bitmap-data') {
    late.push({ offset: r.offset, length: k.cs });
    return true;
  }
  if (r.target === 'bitmap-directory') {
    if (r.offset >= k.fileSize) return false;
    late.push({ offset: r.offset, length: r.length, what: 'bitmap directory' });
    return true;
  }
  const entries = r.length / 8;
  if (entries === 0 || entries > C.BME_MAX_TABLE_SIZE || r.offset >= k.fileSize) return false;
  late.push({ offset: r.offset, length: r.length, what: 'bitmap table' });
  return true;
}

/** On-disk refcounts, for every cluster counted plus a margin past the end for allocations. */
async function readOnDisk(img: Qcow2Image, k: RefCounter, refblocks: RefWalk['refblocks']) {
  const entriesPerBlock = img.geo.refcountBlockEntries;
  // One refcount block's worth past the end, so copies can be appended where an existing block counts them.
  const countedClusters =
    Math.max(k.hostClusters, k.refs.length) + Math.max(ALLOC_MARGIN, Math.min(entriesPerBlock, 1 << 20));
  const onDisk = countsArray(img.geo.refcountOrder, countedClusters);
  const unknown = { onDiskUnknown: new Uint8Array(0), onDisk };
  const wanted: Array<{ index: number; offset: number }> = [];
  for (const rb of refblocks) {
    const first0 = rb.index * entriesPerBlock;
    if (first0 >= countedClusters) continue;
    if (rb.status !== 'ok') markOnDiskUnknown(unknown, first0, first0 + entriesPerBlock);
    else wanted.push(rb);
  }
  // Batches read into one reused arena: fresh memory costs a page fault per 4 KiB.
  const pool = new BufferPool(1 << 20);
  const perBatch = Math.max(1, Math.floor((1 << 20) / k.cs));
  for (let b = 0; b < wanted.length; b += perBatch) {
    const batch = wanted.slice(b, b + perBatch);
    pool.release();
    const blocks = await readTables(
      img.io,
      k.fileSize,
      batch.map((x) => x.offset),
      k.cs,
      pool,
    );
    for (const rb of batch) {
      const block = blocks.get(rb.offset)!;
      const first0 = rb.index * entriesPerBlock;
      const n = Math.min(entriesPerBlock, countedClusters - first0);
      getRefcounts(block, img.geo.refcountOrder, onDisk.subarray(first0, first0 + n), n);
    }
  }
  k.growTo(countedClusters);
  return { onDisk, onDiskUnknown: unknown.onDiskUnknown };
}

/** The clusters whose on-disk refcount differs from its references or is unknown (see RefWalk.mismatched). */
export function findMismatched(w: Pick<RefWalk, 'refs' | 'onDisk' | 'onDiskUnknown'>): Uint32Array {
  const { refs, onDisk, onDiskUnknown: unknown } = w;
  let out = new Uint32Array(64);
  let m = 0;
  const push = (c: number): void => {
    if (m === out.length) {
      const grown = new Uint32Array(2 * out.length);
      grown.set(out);
      out = grown;
    }
    out[m++] = c;
  };
  const common = Math.min(refs.length, onDisk.length);
  if (unknown.length === 0) {
    for (let c = 0; c < common; c++) if (refs[c] !== onDisk[c]) push(c);
  } else for (let c = 0; c < common; c++) if (refs[c] !== onDisk[c] || unknown[c] === 1) push(c);
  for (let c = common; c < Math.max(refs.length, onDisk.length); c++)
    if ((c < refs.length ? refs[c]! : 0) !== (c < onDisk.length ? onDisk[c]! : 0) || unknown[c] === 1) push(c);
  return out.subarray(0, m);
}

/** Mark the on-disk refcounts of clusters [from, to) unknown (the flags are allocated on the first). */
export function markOnDiskUnknown(w: Pick<RefWalk, 'onDisk' | 'onDiskUnknown'>, from: number, to: number): void {
  const clusters = w.onDisk.length;
  if (w.onDiskUnknown.length < clusters) {
    const all = new Uint8Array(clusters);
    all.set(w.onDiskUnknown);
    w.onDiskUnknown = all;
  }
  w.onDiskUnknown.fill(1, Math.min(from, clusters), Math.min(to, clusters));
}
