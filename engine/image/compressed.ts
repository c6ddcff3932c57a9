// Decompressing one compressed cluster, as QEMU does: the stream starts at the descriptor's byte
// offset and may be followed by junk up to the end of its last sector; output stops at exactly one
// cluster. deflate = raw DEFLATE (no zlib header); zstd = one or more frames, no length prefix.
import { inflateRawSync, constants as zc } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';
import * as C from '../format/constants.js';

/** A compressed cluster that cannot be decompressed; `reason` is one line. */
export class DecompressionError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'DecompressionError';
  }
}

/**
 * Decompress `input` (the bytes from the descriptor's offset to the end of its last sector) into
 * exactly `clusterSize` bytes. Lenient where QEMU is (trailing bytes ignored) and a little more
 * (deflate with a 32 KiB window, so streams from other writers are accepted). Throws
 * DecompressionError when fewer than `clusterSize` bytes come out or the stream is invalid.
 */
export function decompressCluster(input: Uint8Array, compressionType: number, clusterSize: number): Uint8Array {
  return compressionType === C.COMPRESSION_ZSTD ? inflateZstd(input, clusterSize) : inflateDeflate(input, clusterSize);
}

function inflateDeflate(input: Uint8Array, clusterSize: number): Uint8Array {
  let out = inflatePrefix(input, input.length, clusterSize + DEFLATE_SLACK);
  if (out === 'too large') {
    // QEMU stops at one cluster and ignores the rest; Node cannot stop early, so find an input
    // prefix whose output covers the cluster without exceeding the bound (one input byte yields
    // at most ~1 KiB, so such a prefix exists).
    let lo = 0;
    let hi = input.length;
    for (;;) {
      const mid = (lo + hi) >>> 1;
      if (mid === lo)
        throw new DecompressionError(`deflate stream produces more than the cluster size (${clusterSize} bytes)`);
      const r = inflatePrefix(input, mid, clusterSize + DEFLATE_SLACK);
      if (r === 'too large') hi = mid;
      else if (r.length < clusterSize) lo = mid;
      else {
        out = r;
        break;
      }
    }
  }
  if (out.length < clusterSize)
    throw new DecompressionError(`deflate stream ends after ${out.length} of ${clusterSize} bytes`);
  return out.subarray(0, clusterSize);
}

/** Output bound above the cluster size while searching (must exceed one byte's expansion). */
const DEFLATE_SLACK = 64 * 1024;

function inflatePrefix(input: Uint8Array, length: number, max: number): Uint8Array | 'too large' {
  try {
    // Z_SYNC_FLUSH: a stream cut short yields what it has instead of throwing.
    return inflateRawSync(input.subarray(0, length), { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: max });
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return 'too large';
    throw new DecompressionError(`invalid deflate stream: ${(e as Error).message}`);
  }
}

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_SKIPPABLE_MASK = 0xfffffff0;
const ZSTD_SKIPPABLE_MAGIC = 0x184d2a50;

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** A zstd block never holds more than 128 KiB of content. */
const ZSTD_BLOCK_MAX = 128 * 1024;

export interface ZstdFrameInfo {
  /** Bytes of the frame (header, blocks, checksum). */
  length: number;
  /** Upper bound of what it decompresses to (0 for a skippable frame). */
  maxOutput: number;
}

/**
 * Size of the zstd frame at `pos` and a bound on its output, found by walking block headers
 * without decompressing; undefined when the bytes there are not a complete frame.
 */
export function zstdFrameInfo(b: Uint8Array, pos: number): ZstdFrameInfo | undefined {
  if (pos + 4 > b.length) return undefined;
  const magic = le32(b, pos);
  if ((magic & ZSTD_SKIPPABLE_MASK) === ZSTD_SKIPPABLE_MAGIC) {
    if (pos + 8 > b.length) return undefined;
    const n = 8 + le32(b, pos + 4);
    return pos + n <= b.length ? { length: n, maxOutput: 0 } : undefined;
  }
  if (magic !== ZSTD_MAGIC) return undefined;
  let maxOutput = 0;
  let p = pos + 4;
  if (p >= b.length) return undefined;
  const fhd = b[p]!;
  p += 1;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  const fcsFlag = fhd >> 6;
  if (!singleSegment) p += 1;
  p += [0, 1, 2, 4][dictFlag]!;
  p += fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  for (;;) {
    if (p + 3 > b.length) return undefined;
    const bh = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);
    p += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) return undefined;
    p += type === 1 ? 1 : size;
    maxOutput += type === 2 ? ZSTD_BLOCK_MAX : size;
    if (p > b.length) return undefined;
    if (last) break;
  }
  p += checksum ? 4 : 0;
  return p <= b.length ? { length: p - pos, maxOutput } : undefined;
}

function inflateZstd(input: Uint8Array, clusterSize: number): Uint8Array {
  const out = new Uint8Array(clusterSize);
  let produced = 0;
  let pos = 0;
  while (produced < clusterSize) {
    const info = zstdFrameInfo(input, pos);
    if (!info)
      throw new DecompressionError(
        produced === 0
          ? 'invalid zstd stream: no complete frame at the cluster offset'
          : `zstd stream ends after ${produced} of ${clusterSize} bytes`,
      );
    const frame = input.subarray(pos, pos + info.length);
    pos += info.length;
    if ((le32(frame, 0) & ZSTD_SKIPPABLE_MASK) === ZSTD_SKIPPABLE_MAGIC) continue;
    // Bounded memory: a frame is only decoded if it cannot expand beyond what a cluster needs.
    if (info.maxOutput > clusterSize + ZSTD_BLOCK_MAX)
      throw new DecompressionError(
        `zstd frame may decompress to ${info.maxOutput} bytes, more than the cluster size (${clusterSize})`,
      );
    let data: Uint8Array;
    try {
      data = zstdDecompress(frame);
    } catch (e) {
      throw new DecompressionError(`invalid zstd frame: ${(e as Error).message}`);
    }
    const take = Math.min(data.length, clusterSize - produced);
    out.set(data.subarray(0, take), produced);
    produced += take;
  }
  return out;
}
