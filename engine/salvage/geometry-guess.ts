// What can still be learnt from cluster 0, and the cluster size when cluster 0 says nothing.
import * as C from '../format/constants.js';
import { u32, u64 } from '../format/bytes.js';
import { decodeHeader, type Qcow2Header } from '../format/header.js';
import type { PositionalIO } from '../io/positional-io.js';
import { isZero, pointerTableSummary } from '../format/cluster-content.js';
import { readInto, uninitialized } from './bulk-read.js';

/** Header fields the salvage may use, each present only when it passed a sanity check. */
export interface HeaderHints {
  /** The header decoded and validated as QEMU would (check mode). */
  intact: boolean;
  /** Why the strict decode failed (QEMU's wording), when it did. */
  damage?: string;
  magicOk: boolean;
  version?: number;
  clusterBits?: number;
  size?: number;
  l1Offset?: number;
  l1Size?: number;
  refcountTableOffset?: number;
  refcountTableClusters?: number;
  refcountOrder?: number;
  nbSnapshots?: number;
  snapshotsOffset?: number;
  compressionType?: number;
  extendedL2?: boolean;
  backingFile?: string;
  backingFormat?: string;
  /** Guest data encrypted (crypt_method), from an intact header. */
  cryptMethod?: number;
  /** Guest data in an external data file, from an intact header. */
  externalDataFile?: boolean;
  /** A damaged header whose backing-file fields still read "none" (offset and length 0). */
  noBackingRecorded?: boolean;
  /** The dirty bit (lazy refcounts): the refcounts may lag behind the tables. */
  dirty?: boolean;
  /** The bitmaps extension, from an intact header. */
  bitmaps?: { nbBitmaps: number; directoryOffset: number; directorySize: number };
}

const MAX_VIRTUAL_SIZE = 2 ** 53;

/** Read cluster 0 strictly, and if that fails, field by field with plausibility checks. */
export function readHeaderHints(buf: Uint8Array, fileSize: number): HeaderHints {
  try {
    const h: Qcow2Header = decodeHeader(buf, { checkMode: true });
    return {
      intact: true,
      magicOk: true,
      version: h.version,
      clusterBits: h.clusterBits,
      size: h.size,
      l1Offset: h.l1TableOffset,
      l1Size: h.l1Size,
      refcountTableOffset: h.refcountTableOffset,
      refcountTableClusters: h.refcountTableClusters,
      refcountOrder: h.refcountOrder,
      nbSnapshots: h.nbSnapshots,
      snapshotsOffset: h.snapshotsOffset,
      compressionType: h.compressionType,
      extendedL2: (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n,
      backingFile: h.backingFile,
      backingFormat: h.backingFormat,
      cryptMethod: h.cryptMethod,
      externalDataFile: (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n,
      dirty: (h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n,
      // Without the autoclear bit the extension is stale: its clusters may hold data by now.
      bitmaps: (h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n ? h.bitmaps : undefined,
    };
  } catch (e) {
    const hints: HeaderHints = { intact: false, magicOk: false, damage: e instanceof Error ? e.message : String(e) };
    if (buf.length < C.HEADER_V2_LENGTH) return hints;
    hints.magicOk = u32(buf, 0) === C.QCOW2_MAGIC;
    const version = u32(buf, C.HDR.version);
    // Without the magic or a known version, the other fields are probably not a header either.
    if (!hints.magicOk && version !== 2 && version !== 3) return hints;
    if (version === 2 || version === 3) hints.version = version;
    const cb = u32(buf, C.HDR.clusterBits);
    if (cb >= C.MIN_CLUSTER_BITS && cb <= C.MAX_CLUSTER_BITS) hints.clusterBits = cb;
    const size = u64(buf, C.HDR.size);
    if (size > 0 && size < MAX_VIRTUAL_SIZE && size % 512 === 0) hints.size = size;
    const cs = hints.clusterBits !== undefined ? 2 ** hints.clusterBits : 512;
    const aligned = (o: number): boolean => o > 0 && o % cs === 0 && o < Math.max(fileSize, 1) * 4;
    const l1Off = u64(buf, C.HDR.l1TableOffset);
    const l1Size = u32(buf, C.HDR.l1Size);
    if (aligned(l1Off) && l1Size > 0 && l1Size <= C.QCOW_MAX_L1_SIZE / 8) {
      hints.l1Offset = l1Off;
      hints.l1Size = l1Size;
    }
    const rtOff = u64(buf, C.HDR.refcountTableOffset);
    const rtCl = u32(buf, C.HDR.refcountTableClusters);
    if (aligned(rtOff) && rtCl > 0 && rtCl * cs <= C.QCOW_MAX_REFTABLE_SIZE) {
      hints.refcountTableOffset = rtOff;
      hints.refcountTableClusters = rtCl;
    }
    const nbs = u32(buf, C.HDR.nbSnapshots);
    const so = u64(buf, C.HDR.snapshotsOffset);
    if (nbs > 0 && nbs <= C.QCOW_MAX_SNAPSHOTS && aligned(so)) {
      hints.nbSnapshots = nbs;
      hints.snapshotsOffset = so;
    }
    if (version === 3 && buf.length >= C.HEADER_V3_MIN_LENGTH) {
      const ro = u32(buf, C.HDR.refcountOrder);
      if (ro <= C.MAX_REFCOUNT_ORDER) hints.refcountOrder = ro;
      const incompat = u32(buf, C.HDR.incompatibleFeatures + 4);
      if (u32(buf, C.HDR.incompatibleFeatures) === 0 && incompat < 0x20) hints.extendedL2 = (incompat & 0x10) !== 0;
      const hl = u32(buf, C.HDR.headerLength);
      if (hl > C.HDR.compressionType && hl <= cs) {
        const ct = buf[C.HDR.compressionType]!;
        if (ct <= C.COMPRESSION_ZSTD) hints.compressionType = ct;
      }
    } else if (version === 2) hints.refcountOrder = 4;
    const bfo = u64(buf, C.HDR.backingFileOffset);
    const bfs = u32(buf, C.HDR.backingFileSize);
    // Believed only where the magic and version survive: a zeroed header also reads "none".
    if (hints.magicOk && hints.version !== undefined && bfo === 0 && bfs === 0) hints.noBackingRecorded = true;
    if (bfo > 0 && bfs > 0 && bfs <= C.MAX_BACKING_FILE_NAME && bfo + bfs <= Math.min(cs, buf.length)) {
      const name = new TextDecoder('utf-8', { fatal: false }).decode(buf.subarray(bfo, bfo + bfs));
      if (/^[\x20-\x7e\u00a0-\uffff]+$/.test(name)) hints.backingFile = name;
    }
    return hints;
  }
}

/**
 * Infer cluster_bits when cluster 0 does not say it, from independent clues in the first
 * `limit` bytes (512-byte sectors, large sequential reads):
 * - every L1/L2/refcount-table entry holds a cluster-aligned offset; with more than a handful,
 *   some are odd multiples of the cluster size, so the smallest alignment that is not rare is an
 *   upper bound of the cluster size (it can overshoot when few offsets survive);
 * - refcount block 0 counts the clusters in use (16-bit ones from cluster 0 on), so the file size
 *   (or the largest offset any table mentions, if the file was cut) divided by that count is the
 *   cluster size.
 */
export async function inferClusterBits(
  io: PositionalIO,
  fileSize: number,
  limit = 256 * 1024 * 1024,
): Promise<{ clusterBits: number; evidence: number } | undefined> {
  const hist = new Array<number>(64).fill(0);
  const chunk = 4 * 1024 * 1024;
  const end = Math.min(fileSize, limit);
  const targetLimit = Math.max(fileSize, 1) * 4;
  const state: InferState = {
    maxOffset: 0,
    refblockOnes: 0,
    inRefblock: false,
    refblockDone: false,
    tableSectors: [],
    compressed: [],
  };
  const reused = uninitialized(Math.min(chunk, Math.max(end, 512)));
  for (let pos = 0; pos < end; pos += chunk) {
    const buf = reused.subarray(0, await readInto(io, pos, reused, Math.min(chunk, end - pos)));
    for (let s = 0; s + 512 <= buf.length; s += 512) {
      sectorOffsets(buf, s, pos + s, targetLimit, hist, state);
      refblockSector(buf, s, pos + s, state);
    }
  }
  let total = 0;
  for (let t = 9; t < 64; t++) total += hist[t]!;
  let tzBits: number | undefined;
  let below = 0;
  for (let t = 9; t <= C.MAX_CLUSTER_BITS && total > 0; t++) {
    if (hist[t]! > 0 && below + hist[t]! > total * 0.02) {
      tzBits = t;
      break;
    }
    below += hist[t]!;
  }
  if (total > 0 && tzBits === undefined) tzBits = C.MAX_CLUSTER_BITS;
  let rbBits: number | undefined;
  if (state.refblockOnes > 0) {
    const used = Math.max(fileSize, state.maxOffset);
    const b = Math.round(Math.log2(used / state.refblockOnes));
    if (b >= C.MIN_CLUSTER_BITS && b <= C.MAX_CLUSTER_BITS) rbBits = b;
  }
  if (tzBits === undefined && rbBits === undefined) return undefined;
  const upper = tzBits ?? C.MAX_CLUSTER_BITS;
  const evidence = total + state.refblockOnes;
  // Third clue, to correct an overshoot: compressed descriptors only decode to streams that lie
  // inside the file and outside every table cluster with the right cluster size.
  if (rbBits !== undefined && rbBits <= upper && violations(rbBits, state, targetLimit) === 0)
    return { clusterBits: rbBits, evidence };
  if (state.compressed.length) {
    for (let cb = upper; cb >= C.MIN_CLUSTER_BITS; cb--)
      if (violations(cb, state, targetLimit) === 0) return { clusterBits: cb, evidence };
  }
  return { clusterBits: rbBits !== undefined && rbBits <= upper ? rbBits : upper, evidence };
}

/** Compressed descriptors that do not fit cluster_bits = cb: streams beyond the file or inside a table. */
function violations(cb: number, st: InferState, targetLimit: number): number {
  const cs = 2 ** cb;
  const tables = new Set<number>();
  for (const s of st.tableSectors) tables.add(Math.floor(s / cs));
  const x = 62 - (cb - 8);
  const hiBits = x - 32;
  const mask = 2 ** (cb - 8) - 1;
  let bad = 0;
  for (let k = 0; k < st.compressed.length; k += 2) {
    const hi = st.compressed[k]!;
    const lo = st.compressed[k + 1]!;
    const coff = (hi & (2 ** hiBits - 1)) * 0x1_0000_0000 + lo;
    const sectors = (Math.floor((hi & 0x3fffffff) / 2 ** hiBits) & mask) + 1;
    const end = Math.floor(coff / 512) * 512 + sectors * 512;
    if (coff >= targetLimit) {
      bad++;
      continue;
    }
    for (let c = Math.floor(coff / cs); c * cs < end; c++)
      if (tables.has(c)) {
        bad++;
        break;
      }
  }
  return bad;
}

interface InferState {
  maxOffset: number;
  refblockOnes: number;
  inRefblock: boolean;
  refblockDone: boolean;
  /** File offsets of sectors that look like table entries (bounded). */
  tableSectors: number[];
  /** Compressed descriptors seen, as (hi, lo) pairs (bounded). */
  compressed: number[];
}

const MAX_CLUES = 200_000;

/** If the 512-byte sector looks like a run of table entries, add each offset's alignment to hist. */
function sectorOffsets(
  buf: Uint8Array,
  s: number,
  fileOffset: number,
  targetLimit: number,
  hist: number[],
  st: InferState,
): void {
  // First pass: is every entry plausible? (Most sectors are data and fail at once, allocating nothing.)
  let any = false;
  for (let p = s; p < s + 512; p += 8) {
    const hi = u32(buf, p);
    const lo = u32(buf, p + 4);
    if (hi === 0 && lo === 0) continue;
    any = true;
    if (hi & C.OFLAG_COMPRESSED_HI) {
      if (hi & C.OFLAG_COPIED_HI) return;
      // Even the narrowest offset field (2 MiB clusters: bits 0..48) must point into the file.
      if ((hi & 0x1ffff) * 0x1_0000_0000 + lo >= targetLimit) return;
      continue; // compressed descriptors carry unaligned offsets: judged later
    }
    if ((hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & 0x1fe) !== 0) return;
    const off = (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & 0xfffffe00) >>> 0);
    if (off >= targetLimit) return;
  }
  // Second pass: record what the sector says.
  let max = 0;
  const comp: number[] = [];
  for (let p = s; p < s + 512; p += 8) {
    const hi = u32(buf, p);
    const lo = u32(buf, p + 4);
    if (hi === 0 && lo === 0) continue;
    if (hi & C.OFLAG_COMPRESSED_HI) {
      comp.push(hi, lo);
      continue;
    }
    const off = (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & 0xfffffe00) >>> 0);
    if (off === 0) continue; // zero-flag entry
    hist[Math.min(trailingZeros(off), 63)]!++;
    if (off > max) max = off;
  }
  if (max > st.maxOffset) st.maxOffset = max;
  if (any && st.tableSectors.length < MAX_CLUES) st.tableSectors.push(fileOffset);
  if (st.compressed.length < 2 * MAX_CLUES) st.compressed.push(...comp);
}

/** The first refcount block (16-bit refcounts, cluster 0 in use): count its non-zero entries. */
function refblockSector(buf: Uint8Array, s: number, fileOffset: number, st: InferState): void {
  if (st.refblockDone || fileOffset === 0) return;
  let ones = 0;
  let zeros = 0;
  for (let p = s; p < s + 512; p += 2) {
    const v = (buf[p]! << 8) | buf[p + 1]!;
    if (v === 0) zeros++;
    else if (v <= 16) ones++;
    else {
      if (st.inRefblock) st.refblockDone = true;
      return;
    }
  }
  if (!st.inRefblock) {
    // A block starts with the header cluster's refcount (1) and has no hole before its last use.
    if (((buf[s]! << 8) | buf[s + 1]!) !== 1 || ones < 2) return;
    st.inRefblock = true;
  }
  if (ones === 0) {
    st.refblockDone = true;
    return;
  }
  st.refblockOnes += ones;
  if (zeros > 0) st.refblockDone = true;
}

function trailingZeros(v: number): number {
  let t = 0;
  while (v % 2 === 0 && t < 63) {
    v /= 2;
    t++;
  }
  return t;
}

/**
 * Extended L2 entries, when the header that says so is gone: L2 tables with 128-bit entries are
 * table-like only when read as such (their bitmap words break the 64-bit reading), while tables
 * of a standard image are not made table-like by the 128-bit reading. Counts both in the first
 * `limit` bytes.
 */
export async function inferExtendedL2(
  io: PositionalIO,
  fileSize: number,
  clusterBits: number,
  limit = 64 * 1024 * 1024,
): Promise<boolean> {
  const cs = 2 ** clusterBits;
  if (clusterBits < C.MIN_EXTENDED_L2_CLUSTER_BITS) return false;
  const base = { clusterSize: cs, fileSize, targetLimit: Math.max(fileSize * 4, fileSize + 2 ** 30), refcountOrder: 4 };
  const std = { ...base, extendedL2: false };
  const ext = { ...base, extendedL2: true };
  let extOnly = 0,
    stdOnly = 0;
  const end = Math.min(fileSize, limit);
  const chunk = Math.max(cs, 4 * 1024 * 1024);
  const reused = uninitialized(chunk);
  for (let pos = 0; pos < end; pos += chunk) {
    const buf = reused.subarray(0, await readInto(io, pos, reused, Math.min(chunk, end - pos)));
    for (let o = 0; o + cs <= buf.length; o += cs) {
      if (isZero(buf, o, cs)) continue;
      const s = pointerTableSummary(buf, o, std, pos + o) !== undefined;
      const e = pointerTableSummary(buf, o, ext, pos + o) !== undefined;
      if (e && !s) extOnly++;
      else if (s && !e) stdOnly++;
    }
  }
  return extOnly > stdOnly;
}
