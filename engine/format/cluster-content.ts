// What a host cluster looks like by its content alone, without trusting any metadata: zeros, data, a
// header, a pointer table (L1, L2, refcount table), a refcount block, a snapshot table, a zstd stream. The
// salvage scan classifies every cluster with it; check and repair use it as evidence of what a cluster is.
import * as C from './constants.js';
import { getRefcount } from './refcount.js';

/** What a host cluster looks like by its content alone. Stored as one byte where a map is kept. */
export const enum ClusterClass {
  Zero = 0,
  Data = 1,
  Header = 2,
  /** Array of 64-bit table entries (L1, L2 or refcount table: told apart later by what they point to). */
  PointerTable = 3,
  RefcountBlock = 4,
  SnapshotTable = 5,
  /** Starts with a zstd frame magic (a compressed cluster, usually). */
  Zstd = 6,
}

export const CLASS_NAMES = [
  'zero',
  'data',
  'header',
  'pointer-table',
  'refcount-block',
  'snapshot-table',
  'zstd-stream',
] as const;

/** What the scan remembers of a pointer-table-like cluster (small: the content is re-read later). */
export interface PointerTableSummary {
  offset: number;
  /** Non-zero 64-bit entries. */
  entries: number;
  /** Entries with bit 62 (compressed descriptor). */
  compressed: number;
  /** Entries with bit 0 set (zero flag: possible only in L2). */
  zeroFlag: number;
  /** Entries with bit 63 (COPIED). */
  copied: number;
  /** Standard targets at or beyond the end of the file (truncation). */
  beyondEof: number;
  /** Largest standard target offset. */
  maxTarget: number;
  /** Read as 128-bit extended L2 entries (only in images with extended L2). */
  extended: boolean;
}

export interface ClassifyContext {
  clusterSize: number;
  fileSize: number;
  /** Targets may lie beyond the end of the file (truncated file) up to this bound. */
  targetLimit: number;
  refcountOrder: number;
  extendedL2: boolean;
}

const ZSTD_MAGIC = 0xfd2fb528; // little-endian bytes 28 b5 2f fd

export function isZero(buf: Uint8Array, off: number, len: number): boolean {
  // Word-wise when aligned (the scan's buffers are), byte-wise otherwise.
  if ((buf.byteOffset + off) % 4 === 0 && len % 4 === 0) {
    const w = new Uint32Array(buf.buffer, buf.byteOffset + off, len / 4);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
    return true;
  }
  for (let i = off; i < off + len; i++) if (buf[i] !== 0) return false;
  return true;
}

function be32(buf: Uint8Array, o: number): number {
  return ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
}

/**
 * A pointer table: every 64-bit entry (every first word for extended L2) is 0 or a plausible
 * L1/L2/refcount-table entry: reserved bits clear, a cluster-aligned offset inside the file (or
 * below targetLimit), or a compressed descriptor whose stream starts inside the file.
 * Returns undefined as soon as one entry is implausible.
 */
export function pointerTableSummary(
  buf: Uint8Array,
  off: number,
  ctx: ClassifyContext,
  clusterOffset: number,
): PointerTableSummary | undefined {
  const cs = ctx.clusterSize;
  const step = ctx.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const cbits = Math.log2(cs);
  const cShift = 62 - (cbits - 8); // compressed offset bits 0..cShift-1
  const cHiBits = cShift - 32;
  let entries = 0,
    compressed = 0,
    zeroFlag = 0,
    copied = 0,
    beyondEof = 0,
    maxTarget = 0;
  for (let p = off; p < off + cs; p += step) {
    const hi = be32(buf, p);
    const lo = be32(buf, p + 4);
    if (ctx.extendedL2) {
      // Word 1 is the subcluster bitmap: high half = reads as zero, low half = allocated.
      const zeroBits = be32(buf, p + 8);
      const allocBits = be32(buf, p + 12);
      if ((zeroBits & allocBits) !== 0) return undefined;
      if (hi === 0 && lo === 0 && (zeroBits !== 0 || allocBits !== 0)) {
        if (allocBits !== 0) return undefined; // allocated subclusters need a host cluster
        entries++;
        zeroFlag++;
        continue;
      }
    }
    if (hi === 0 && lo === 0) continue;
    entries++;
    if (hi & C.OFLAG_COMPRESSED_HI) {
      if (hi & C.OFLAG_COPIED_HI) return undefined; // never set on compressed entries
      const offHi = hi & (2 ** cHiBits - 1);
      const coff = offHi * 0x1_0000_0000 + lo;
      if (coff >= ctx.fileSize || coff < cs) return undefined;
      compressed++;
      continue;
    }
    // Standard entry: L2 reserved 0x3f000000_000001fe (L1 also reserves bit 0 and bit 62, both fine here).
    if ((hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & C.L2E_STD_RESERVED_MASK_LO) !== 0) return undefined;
    const target = (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
    if (lo & C.OFLAG_ZERO_LO) zeroFlag++;
    if (hi & C.OFLAG_COPIED_HI) copied++;
    if (target === 0) {
      if (!(lo & C.OFLAG_ZERO_LO)) return undefined; // COPIED with no offset: only with a data file
      continue;
    }
    if (target % cs !== 0) return undefined;
    if (target === clusterOffset) return undefined; // a table pointing at itself is not a table
    if (target >= ctx.targetLimit) return undefined;
    if (target >= ctx.fileSize) beyondEof++;
    if (target > maxTarget) maxTarget = target;
  }
  if (entries === 0) return undefined;
  return {
    offset: clusterOffset,
    entries,
    compressed,
    zeroFlag,
    copied,
    beyondEof,
    maxTarget,
    extended: ctx.extendedL2,
  };
}

/** Refcount block: small refcounts (QEMU keeps 1 per cluster, more only when shared by snapshots). */
export function looksLikeRefcountBlock(buf: Uint8Array, off: number, ctx: ClassifyContext): boolean {
  const order = ctx.refcountOrder;
  if (order < 3) return false; // 1/2/4-bit refcounts: any byte is valid, content says nothing
  const n = (ctx.clusterSize * 8) >> order;
  const view = buf.subarray(off, off + ctx.clusterSize);
  let nonZero = 0;
  for (let i = 0; i < n; i++) {
    const v = getRefcount(view, i, order);
    if (v === 0) continue;
    if (v > 0xffff || (order > 3 && v > 4096)) return false;
    nonZero++;
  }
  // Single-byte refcounts: demand a run of ones at the start, else any small-byte data qualifies.
  if (order === 3 && view[0] !== 1) return false;
  return nonZero > 0;
}

/** Snapshot table: a first entry with a cluster-aligned L1 offset, a sane L1 size and a printable ID. */
export function looksLikeSnapshotTable(buf: Uint8Array, off: number, ctx: ClassifyContext): boolean {
  const l1hi = be32(buf, off);
  const l1lo = be32(buf, off + 4);
  const l1 = l1hi * 0x1_0000_0000 + l1lo;
  if (l1 === 0 || l1 % ctx.clusterSize !== 0 || l1 >= ctx.targetLimit) return false;
  const l1Size = be32(buf, off + 8);
  if (l1Size === 0 || l1Size > C.QCOW_MAX_L1_SIZE / 8) return false;
  const idLen = (buf[off + 12]! << 8) | buf[off + 13]!;
  const nameLen = (buf[off + 14]! << 8) | buf[off + 15]!;
  const extra = be32(buf, off + 36);
  if (idLen === 0 || idLen > 128 || nameLen > 1024 || extra > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) return false;
  const idStart = off + C.SNAPSHOT_ENTRY_FIXED_SIZE + extra;
  if (idStart + idLen + nameLen > off + ctx.clusterSize) return false;
  for (let i = idStart; i < idStart + idLen + nameLen; i++) {
    const c = buf[i]!;
    if (c < 0x20 && c !== 0) return false;
  }
  return true;
}

export interface Classified {
  cls: ClusterClass;
  table?: PointerTableSummary;
}

/** Classify the cluster held at buf[off, off+clusterSize) that sits at host offset clusterOffset. */
export function classifyCluster(buf: Uint8Array, off: number, clusterOffset: number, ctx: ClassifyContext): Classified {
  const cs = ctx.clusterSize;
  if (isZero(buf, off, cs)) return { cls: ClusterClass.Zero };
  if (clusterOffset === 0 && be32(buf, off) === C.QCOW2_MAGIC) return { cls: ClusterClass.Header };
  const first = be32(buf, off);
  if (
    ((first >>> 24) | ((first >>> 8) & 0xff00) | ((first << 8) & 0xff0000) | ((first << 24) >>> 0)) >>> 0 ===
    ZSTD_MAGIC
  )
    return { cls: ClusterClass.Zstd };
  // In extended-L2 images only L2 tables have 128-bit entries; L1 and refcount tables keep 64-bit ones.
  // A cluster readable both ways is read with 64-bit entries (an L1 or refcount table, or an L2 table
  // whose bitmaps are all zero); the role decided later says which.
  const table = ctx.extendedL2
    ? (pointerTableSummary(buf, off, { ...ctx, extendedL2: false }, clusterOffset) ??
      pointerTableSummary(buf, off, ctx, clusterOffset))
    : pointerTableSummary(buf, off, ctx, clusterOffset);
  if (table) return { cls: ClusterClass.PointerTable, table };
  if (looksLikeSnapshotTable(buf, off, ctx)) return { cls: ClusterClass.SnapshotTable };
  if (looksLikeRefcountBlock(buf, off, ctx)) return { cls: ClusterClass.RefcountBlock };
  return { cls: ClusterClass.Data };
}
