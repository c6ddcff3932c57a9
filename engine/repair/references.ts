/**
 * The repair's view of an image: who references which host cluster, counted by QEMU's rules for
 * every *valid* pointer, and the list of pointers that are not valid (which QEMU would still follow
 * or count, and we never do: an unaligned table is never interpreted). The planner runs this walk on
 * the image as it is, and again on an overlay of the image as it will be after the pointer fixes, to
 * get the final reference counts.
 *
 * Why our own walk next to the checker's: the planner needs the referrers of every cluster (to
 * resolve cross-links and re-link orphans) and a count that ignores invalid pointers, while the
 * checker reproduces QEMU's counting including its misreads. The checker stays the judge
 * (`qemu-img`-compatible messages, counters, the double check).
 */
import * as C from '../format/constants.js';
import { walkBitmapDirectory } from '../format/bitmap.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import { getRefcount } from '../format/refcount.js';
import type { SnapshotEntry } from '../format/snapshot.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import { readSnapshotsForRepair } from './snapshots.js';

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
  refs: Uint32Array;
  /** On-disk refcount per host cluster (0 where no valid refblock covers it). */
  onDisk: Float64Array;
  /** True where the on-disk refcount could not be read (its refblock pointer is invalid). */
  onDiskUnknown: Uint8Array;
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

/** Clusters past the end of file whose on-disk refcount is read, so allocations there can be checked. */
export const ALLOC_MARGIN = 64;
/** L2 tables read in parallel. */
const PREFETCH = 8;

/**
 * Walk every structure of `img` and count references. Reads each table once; memory is a few bytes
 * per host cluster.
 */
export async function walkReferences(img: Qcow2Image): Promise<RefWalk> {
  const cs = img.clusterSize;
  const geo = img.geo;
  const fileSize = img.fileSize;
  const n = Math.ceil(fileSize / cs);
  let refs = new Uint32Array(Math.max(n, 1));
  const metadata = new Map<number, string>();
  const multi = new Map<number, Ref[]>();
  const first = new Map<number, Ref>();
  const bad: BadEntry[] = [];
  const ext = img.hasExternalData;
  const cl = (off: number): number => Math.floor(off / cs);

  const grow = (c: number): void => {
    if (c < refs.length) return;
    const next = new Uint32Array(Math.max(c + 1, refs.length * 2));
    next.set(refs);
    refs = next;
  };
  // Two passes keep memory at a few bytes per cluster: the first counts (and tracks only L1 → L2
  // references and guest data mapped onto metadata); the second, needed only when some cluster has
  // more than one reference, walks again and records the referrers of just those clusters.
  let pass: 1 | 2 = 1;
  let shared: Uint8Array | undefined;
  /** Count [off, off+len) as QEMU does, with its EOF guard. Returns false when refused (≥1 cluster past EOF). */
  const count = (off: number, len: number): boolean => {
    if (len <= 0) return true;
    if (off + len - fileSize >= cs) return false;
    if (pass === 2) return true;
    const a = cl(off);
    const b = cl(off + len - 1);
    grow(b);
    for (let c = a; c <= b; c++) refs[c]!++;
    return true;
  };
  const flag = (b: BadEntry): void => {
    if (pass === 1) bad.push(b);
  };
  const track = (c: number, r: Ref): void => {
    const f = first.get(c);
    if (!f) {
      first.set(c, r);
      return;
    }
    let m = multi.get(c);
    if (!m) multi.set(c, (m = [f]));
    m.push(r);
  };
  const markMeta = (off: number, len: number, what: string): void => {
    if (len <= 0) return;
    for (let c = cl(off); c <= cl(off + len - 1); c++) if (!metadata.has(c)) metadata.set(c, what);
  };

  // Refcount structure as it is on disk.
  const h = img.header;
  const oldRefcountClusters = new Set<number>();
  const refblocks: RefWalk['refblocks'] = [];
  for (
    let c = cl(h.refcountTableOffset);
    h.refcountTableClusters && c < cl(h.refcountTableOffset) + h.refcountTableClusters;
    c++
  )
    oldRefcountClusters.add(c);
  const rtEntries = img.reftable.length / 8;
  for (let i = 0; i < rtEntries; i++) {
    const hi = u32(img.reftable, i * 8);
    const lo = u32(img.reftable, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    const off = hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
    let status: RefblockStatus = 'ok';
    if (lo & C.REFT_RESERVED_MASK_LO) status = 'reserved-bits';
    else if (off % cs !== 0) status = 'unaligned';
    else if (off >= fileSize) status = 'beyond-eof';
    refblocks.push({ index: i, offset: off, status });
    if (off < fileSize) {
      oldRefcountClusters.add(cl(off));
      if (off % cs !== 0 && cl(off) + 1 < n) oldRefcountClusters.add(cl(off) + 1);
    }
  }

  // 1. Header.
  count(0, cs);
  markMeta(0, cs, 'header');
  // 2. Active L1 (metadata map first, so entries pointing into metadata are recognised).
  const l1Bytes = h.l1Size * 8;
  markMeta(h.l1TableOffset, l1Bytes, 'active L1 table');
  if (h.refcountTableClusters) markMeta(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table');
  for (const rb of refblocks) if (rb.status === 'ok') markMeta(rb.offset, cs, 'refcount block');

  // Snapshot table (read tolerant: problems are reported, not thrown).
  let snapshots: SnapshotEntry[] = [];
  let snapshotTableBytes = 0;
  let snapshotTableError: string | undefined;
  const incompleteSnapshots: number[] = [];
  const st = await readSnapshotsForRepair(img);
  if (st.error !== undefined) snapshotTableError = st.error;
  else {
    snapshots = st.entries;
    snapshotTableBytes = st.byteLength;
  }
  const oversizeSnapshots = st.oversize;
  if (snapshotTableBytes) markMeta(h.snapshotsOffset, snapshotTableBytes, 'snapshot table');
  snapshots.forEach((s, i) => {
    if (h.version === 3 && s.extraDataSize < C.SNAPSHOT_EXTRA_V3_MIN) incompleteSnapshots.push(i);
    if (s.l1TableOffset % cs === 0 && s.l1Size * 8 <= C.QCOW_MAX_L1_SIZE && s.l1TableOffset < fileSize)
      markMeta(s.l1TableOffset, s.l1Size * 8, 'inactive L1 table');
  });

  const activeL1: RefWalk['activeL1'] = [];
  const activeL2 = new Map<number, number[]>();
  const allL2 = new Set<number>();

  const walkL1 = async (l1Off: number, l1Size: number, active: boolean, snapshotId?: string): Promise<void> => {
    if (l1Size === 0) return;
    if (!count(l1Off, l1Size * 8)) {
      // The table lies past the end of the file: never read zeros as "no mappings" and free what it held.
      flag({
        kind: 'l1-table-beyond-eof',
        entry: -1,
        hi: 0,
        lo: 0,
        active,
        table: l1Off,
        index: -1,
        qemuClusters: [],
        ...(snapshotId !== undefined ? { snapshotId } : {}),
      });
      return;
    }
    const l1 = active ? img.l1 : await readPadded(img.io, l1Off, l1Size * 8);
    const pending: number[] = [];
    for (let i = 0; i < l1Size; i++) {
      const hi = u32(l1, i * 8);
      const lo = u32(l1, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      const entry = l1Off + i * 8;
      const off = l1Offset(hi, lo);
      const badBase = {
        entry,
        hi,
        lo,
        active,
        table: l1Off,
        index: i,
        ...(snapshotId !== undefined ? { snapshotId } : {}),
      };
      if (hi & C.L1E_RESERVED_MASK_HI || lo & C.L1E_RESERVED_MASK_LO)
        flag({ kind: 'l1-reserved-bits', ...badBase, qemuClusters: [] });
      if (off === 0) {
        // Flags without an offset: QEMU's I/O treats the range as unallocated, its check counts cluster 0.
        flag({ kind: 'l1-zero-offset', ...badBase, qemuClusters: [0] });
        continue;
      }
      if (off % cs !== 0) {
        const q = off < fileSize ? [cl(off), cl(off) + 1] : [];
        flag({ kind: 'l1-unaligned', ...badBase, qemuClusters: q });
        continue;
      }
      if (off + cs - fileSize >= cs) {
        flag({ kind: 'l1-beyond-eof', ...badBase, qemuClusters: [] });
        continue;
      }
      const meta = metadata.get(cl(off));
      if (meta !== undefined && meta !== 'L2 table') {
        flag({ kind: 'l1-into-metadata', ...badBase, qemuClusters: [cl(off)] });
        continue;
      }
      count(off, cs);
      if (pass === 1) track(cl(off), { entry, kind: active ? 'l1' : 'snap-l1', guest: i * geo.l1Coverage });
      if (active && pass === 1) {
        activeL1.push({ entry, index: i, hi, lo, l2: off });
        const a = activeL2.get(off);
        if (a) a.push(entry);
        else activeL2.set(off, [entry]);
      }
      // A table already walked from another L1 entry: its data counts again per reference (below).
      if (visited.has(off)) continue;
      visited.add(off);
      pending.push(off, i);
    }
    // Read the tables a few at a time, in parallel, and walk them in L1 order.
    for (let k = 0; k < pending.length; k += 2 * PREFETCH) {
      const batch = pending.slice(k, k + 2 * PREFETCH);
      const tables = await Promise.all(batch.filter((_, x) => x % 2 === 0).map((o) => readPadded(img.io, o, cs)));
      tables.forEach((t, x) => walkL2(t, batch[2 * x]!, batch[2 * x + 1]!, active, snapshotId));
    }
  };

  const walkL2 = (t: Uint8Array, l2Off: number, l1Index: number, active: boolean, snapshotId?: string): void => {
    const step = geo.l2EntrySize;
    for (let j = 0; j < geo.l2Entries; j++) {
      const hi = u32(t, j * step);
      const lo = u32(t, j * step + 4);
      if (hi === 0 && lo === 0 && (!geo.extendedL2 || (u32(t, j * step + 8) === 0 && u32(t, j * step + 12) === 0)))
        continue;
      const entry = l2Off + j * step;
      // Built only when a problem is found (this loop runs once per guest cluster).
      const badBase = (): Omit<BadEntry, 'kind' | 'qemuClusters'> => ({
        entry,
        hi,
        lo,
        active,
        table: l2Off,
        index: j,
        ...(snapshotId !== undefined ? { snapshotId } : {}),
      });
      const type = classifyL2(hi, lo, geo.extendedL2, ext);
      const bmZero = geo.extendedL2 ? u32(t, j * step + 8) : 0;
      const bmAlloc = geo.extendedL2 ? u32(t, j * step + 12) : 0;
      if (
        geo.extendedL2 &&
        ((type === ClusterType.Compressed && (bmAlloc | bmZero) !== 0) ||
          (type === ClusterType.Unallocated && bmAlloc !== 0) ||
          (type === ClusterType.Normal && (bmAlloc & bmZero) !== 0))
      ) {
        // Subcluster bitmap damage: QEMU cannot repair it and neither do we (no way to know the intended bits).
        flag({ kind: 'l2-unsupported', ...badBase(), qemuClusters: [] });
        if (type !== ClusterType.Normal) continue;
      }
      if (type === ClusterType.Compressed) {
        if (hi & C.OFLAG_COPIED_HI) flag({ kind: 'l2-compressed-copied', ...badBase(), qemuClusters: [] });
        const d = decodeCompressed(hi, lo, geo);
        if (ext) continue;
        if (!count(d.offset, d.size)) {
          flag({ kind: 'l2-compressed-beyond-eof', ...badBase(), qemuClusters: [] });
          continue;
        }
        continue;
      }
      if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
      if (hi & C.L2E_STD_RESERVED_MASK_HI || lo & C.L2E_STD_RESERVED_MASK_LO)
        flag({ kind: 'l2-reserved-bits', ...badBase(), qemuClusters: [] });
      const off = l2Offset(hi, lo);
      if (off % cs !== 0) {
        const q = off < fileSize ? [cl(off), cl(off) + 1] : [];
        const noData = type === ClusterType.ZeroAlloc || (geo.extendedL2 && bmAlloc === 0);
        flag({ kind: noData ? 'l2-prealloc-unaligned' : 'l2-data-unaligned', ...badBase(), qemuClusters: q });
        continue;
      }
      if (ext) continue;
      if (!count(off, cs)) {
        flag({ kind: 'l2-beyond-eof', ...badBase(), qemuClusters: [] });
        continue;
      }
      if (pass === 1 ? metadata.size > 0 && metadata.has(cl(off)) : shared![cl(off)] === 1)
        track(cl(off), { entry, kind: active ? 'l2' : 'snap-l2', guest: l1Index * geo.l1Coverage + j * cs });
    }
  };

  const walkAll = async (): Promise<void> => {
    await walkL1(h.l1TableOffset, h.l1Size, true);
    for (let si = 0; si < snapshots.length; si++) {
      const s = snapshots[si]!;
      const badBase = {
        entry: h.snapshotsOffset + s.tableOffset,
        hi: 0,
        lo: 0,
        active: false,
        table: h.snapshotsOffset,
        index: si,
        snapshotId: s.id,
      };
      if (s.l1TableOffset % cs !== 0) {
        flag({ kind: 'snapshot-l1-unaligned', ...badBase, qemuClusters: [] });
        continue;
      }
      if (s.l1Size * 8 > C.QCOW_MAX_L1_SIZE) {
        flag({ kind: 'snapshot-l1-too-large', ...badBase, qemuClusters: [] });
        continue;
      }
      if (s.l1Size > 0 && s.l1TableOffset + s.l1Size * 8 - fileSize >= cs) {
        flag({ kind: 'snapshot-l1-beyond-eof', ...badBase, qemuClusters: [] });
        continue;
      }
      await walkL1(s.l1TableOffset, s.l1Size, false, s.id);
    }
    // Snapshot-shared L2 tables: their data references count once per L1 reference (QEMU walks them
    // again for every L1 that points there). Add the extra counts now.
    // (walkL1 skipped re-walking an L2 already seen; replay the counts for each further reference.)
    await recountSharedL2(
      img,
      first,
      multi,
      refs,
      cs,
      geo.l2Entries,
      geo.l2EntrySize,
      fileSize,
      ext,
      pass === 1,
      (c) => (pass === 1 ? metadata.has(c) : shared![c] === 1),
    );
  };
  let visited = allL2;
  await walkAll();
  // Second pass only for clusters referenced more than once (cross-links, snapshot sharing).
  const n2 = refs.length;
  shared = new Uint8Array(n2);
  let anyShared = false;
  for (let c = 0; c < n2; c++)
    if (refs[c]! > 1 && !metadata.has(c)) {
      shared[c] = 1;
      anyShared = true;
    }
  if (anyShared) {
    pass = 2;
    visited = new Set<number>();
    await walkAll();
    pass = 1;
  }

  if (snapshotTableBytes) count(h.snapshotsOffset, snapshotTableBytes);
  if (h.refcountTableClusters) count(h.refcountTableOffset, h.refcountTableClusters * cs);
  if (h.crypto?.length) {
    count(h.crypto.offset, h.crypto.length);
    markMeta(h.crypto.offset, h.crypto.length, 'encryption header');
  }
  let staleBitmaps = false;
  if (h.bitmaps) {
    if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) staleBitmaps = true;
    else
      await countBitmaps(img, h.bitmaps.directoryOffset, h.bitmaps.directorySize, h.bitmaps.nbBitmaps, count, markMeta);
  }
  for (const rb of refblocks) if (rb.status === 'ok') count(rb.offset, cs);

  // On-disk refcounts, for every cluster counted plus a margin past the end for allocations.
  const E = geo.refcountBlockEntries;
  // One refcount block's worth past the end, so copies can be appended where an existing block counts them.
  const L = Math.max(n, refs.length) + Math.max(ALLOC_MARGIN, Math.min(E, 1 << 20));
  const onDisk = new Float64Array(L);
  const onDiskUnknown = new Uint8Array(L);
  for (const rb of refblocks) {
    const first0 = rb.index * E;
    if (first0 >= L) continue;
    if (rb.status !== 'ok') {
      onDiskUnknown.fill(1, first0, Math.min(L, first0 + E));
      continue;
    }
    const block = await readPadded(img.io, rb.offset, cs);
    for (let j = 0; j < E && first0 + j < L; j++) onDisk[first0 + j] = getRefcount(block, j, geo.refcountOrder);
  }
  if (refs.length < L) {
    const r2 = new Uint32Array(L);
    r2.set(refs);
    refs = r2;
  }

  return {
    clusterSize: cs,
    fileSize,
    hostClusters: n,
    refs,
    onDisk,
    onDiskUnknown,
    refblocks,
    oldRefcountClusters,
    metadata,
    multi,
    first,
    bad,
    activeL1,
    activeL2,
    allL2,
    snapshots,
    snapshotTableBytes,
    ...(snapshotTableError !== undefined ? { snapshotTableError } : {}),
    incompleteSnapshots,
    oversizeSnapshots,
    staleBitmaps,
  };
}

/**
 * QEMU walks an L2 table once per L1 entry that points to it, so a table referenced from k L1
 * entries counts each of its data clusters k times. Our walk reads each table once; add the
 * remaining k−1 counts here.
 */
async function recountSharedL2(
  img: Qcow2Image,
  first: Map<number, Ref>,
  multi: Map<number, Ref[]>,
  refs: Uint32Array,
  cs: number,
  l2Entries: number,
  step: number,
  fileSize: number,
  ext: boolean,
  countNow: boolean,
  wanted: (c: number) => boolean,
): Promise<void> {
  for (const [c, list] of [...multi]) {
    const l1refs = list.filter((r) => r.kind === 'l1' || r.kind === 'snap-l1');
    if (l1refs.length < 2) continue;
    const t = await readPadded(img.io, c * cs, cs);
    for (let k = 1; k < l1refs.length; k++) {
      const active = l1refs[k]!.kind === 'l1';
      for (let j = 0; j < l2Entries; j++) {
        const hi = u32(t, j * step);
        const lo = u32(t, j * step + 4);
        const type = classifyL2(hi, lo, img.geo.extendedL2, ext);
        if (ext) continue;
        if (type === ClusterType.Compressed) {
          const d = decodeCompressed(hi, lo, img.geo);
          if (d.offset + d.size - fileSize >= cs) continue;
          if (countNow)
            for (let x = Math.floor(d.offset / cs); x <= Math.floor((d.offset + d.size - 1) / cs); x++) refs[x]!++;
          continue;
        }
        if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
        const off = l2Offset(hi, lo);
        if (off % cs !== 0 || off >= fileSize) continue;
        const x = off / cs;
        if (countNow) refs[x]!++;
        if (!wanted(x)) continue;
        const r: Ref = { entry: c * cs + j * step, kind: active ? 'l2' : 'snap-l2', guest: l1refs[k]!.guest + j * cs };
        const f = first.get(x);
        if (!f) first.set(x, r);
        else {
          let m = multi.get(x);
          if (!m) multi.set(x, (m = [f]));
          m.push(r);
        }
      }
    }
  }
}

async function countBitmaps(
  img: Qcow2Image,
  dirOff: number,
  dirSize: number,
  nb: number,
  count: (o: number, l: number) => boolean,
  markMeta: (o: number, l: number, w: string) => void,
): Promise<void> {
  if (dirSize === 0 || dirOff >= img.fileSize) return;
  count(dirOff, dirSize);
  markMeta(dirOff, dirSize, 'bitmap directory');
  const dir = await readPadded(img.io, dirOff, Math.min(dirSize, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE));
  for (const e of walkBitmapDirectory(dir, nb).entries) {
    const tOff = e.tableOffset;
    const tSize = e.tableSize;
    if (tSize > 0 && tSize <= C.BME_MAX_TABLE_SIZE && tOff < img.fileSize) {
      count(tOff, tSize * 8);
      markMeta(tOff, tSize * 8, 'bitmap table');
      const t = await readPadded(img.io, tOff, tSize * 8);
      for (let k = 0; k < tSize; k++) {
        const hi = u32(t, k * 8) & C.BME_OFFSET_MASK_HI;
        const lo = u32(t, k * 8 + 4) & C.BME_OFFSET_MASK_LO;
        const off = hi * 0x1_0000_0000 + (lo >>> 0);
        if (off) count(off, img.clusterSize);
      }
    }
  }
}
