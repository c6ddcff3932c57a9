import * as C from './constants.js';
import type { Geometry } from './header.js';
import { u32 } from './bytes.js';

/** QEMU's cluster types (qcow2_get_cluster_type). */
export const enum ClusterType {
  Unallocated = 0,
  ZeroPlain = 1,
  ZeroAlloc = 2,
  Normal = 3,
  Compressed = 4,
}

/** Classify the 64-bit word of an L2 entry given as (hi, lo), in QEMU's order. */
export function classifyL2(hi: number, lo: number, extendedL2: boolean, externalData: boolean): ClusterType {
  if (hi & C.OFLAG_COMPRESSED_HI) return ClusterType.Compressed;
  const hasOffset = (hi & C.L2E_OFFSET_MASK_HI) !== 0 || (lo & C.L2E_OFFSET_MASK_LO) !== 0;
  if (!extendedL2 && lo & C.OFLAG_ZERO_LO) return hasOffset ? ClusterType.ZeroAlloc : ClusterType.ZeroPlain;
  if (!hasOffset) return externalData && hi & C.OFLAG_COPIED_HI ? ClusterType.Normal : ClusterType.Unallocated;
  return ClusterType.Normal;
}

/** Host offset of a standard descriptor: bits 9..55 (a multiple of 512, exact as a number).
 * Not cluster-aligned when the entry is corrupt: callers test `offset % clusterSize`. */
export function l2Offset(hi: number, lo: number): number {
  return (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
}

export function l1Offset(hi: number, lo: number): number {
  return (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
}

export interface CompressedDescriptor {
  /** Host byte offset of the compressed stream. */
  offset: number;
  /** 512-byte sectors the stream may occupy. */
  sectors: number;
  /** Bytes from `offset` to the end of the last sector (what QEMU refcounts). */
  size: number;
}

/** Decode a compressed descriptor (bits 0..61 of an L2 entry with bit 62 set). */
export function decodeCompressed(hi: number, lo: number, geo: Geometry): CompressedDescriptor {
  const x = geo.csizeShift; // offset occupies bits 0..x-1
  // Split without losing precision: x >= 49, so the offset field spans lo and part of hi.
  const hiBits = x - 32; // offset bits held in hi
  const offHi = hi & (2 ** hiBits - 1);
  const offset = offHi * 0x1_0000_0000 + (lo >>> 0);
  const sectorsField = Math.floor((hi & 0x3fffffff) / 2 ** hiBits) & geo.csizeMask;
  const sectors = sectorsField + 1;
  return { offset, sectors, size: sectors * C.SECTOR_SIZE - (offset % C.SECTOR_SIZE) };
}

/**
 * Host clusters holding an L2 entry's data: the one cluster of a standard entry (aligned, non-zero),
 * or every cluster a compressed stream touches (each counts one use per stream, as QEMU refcounts
 * them). Empty when the entry maps no host data or its offset is not cluster-aligned.
 */
export function dataClusters(hi: number, lo: number, geo: Geometry, clusterSize: number): number[] {
  if (hi & C.OFLAG_COMPRESSED_HI) {
    const d = decodeCompressed(hi, lo, geo);
    if (!d.offset) return [];
    const first = Math.floor(d.offset / clusterSize);
    const last = Math.floor((d.offset + d.size - 1) / clusterSize);
    const out: number[] = [];
    for (let k = first; k <= last; k++) out.push(k);
    return out;
  }
  const data = l2Offset(hi, lo);
  return data && data % clusterSize === 0 ? [data / clusterSize] : [];
}

/** Encode a compressed descriptor into (hi, lo), flags not included except bit 62. */
export function encodeCompressed(offset: number, sectors: number, geo: Geometry): [number, number] {
  const hiBits = geo.csizeShift - 32;
  const lo = (offset % 0x1_0000_0000) >>> 0;
  const offHi = Math.floor(offset / 0x1_0000_0000);
  const hi = (C.OFLAG_COMPRESSED_HI | ((sectors - 1) * 2 ** hiBits) | offHi) >>> 0;
  return [hi, lo];
}

/** Read entry i of a table buffer as (hi, lo). */
export function entryAt(buf: Uint8Array, byteOff: number): [number, number] {
  return [u32(buf, byteOff), u32(buf, byteOff + 4)];
}
