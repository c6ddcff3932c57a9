// The one decompressor of compressed clusters, for every reader (guest reads, check, write, salvage).
// The stream starts at the descriptor's byte offset and may be followed by junk up to the end of
// its last sector. deflate = raw DEFLATE (no zlib header); zstd = one or more frames, no length
// prefix. Work and memory are bounded whatever the bytes say: output never grows past one cluster
// (plus the decoders' own buffers, under ZSTD_MAX_WINDOW or DEFLATE_SLACK), and a zstd frame that
// declares more than a cluster is refused before it is decoded.
import { inflateRawSync, constants as zc } from 'node:zlib';
import { Decompress } from 'fzstd';
import * as C from '../format/constants.js';

/** A compressed cluster that cannot be decompressed; `reason` is one line. */
export class DecompressionError extends Error {
  constructor(
    readonly reason: string,
    /** Bytes of guest data that came out before the stream failed. */
    readonly produced = 0,
  ) {
    super(reason);
    this.name = 'DecompressionError';
  }
}

export interface DecompressOptions {
  /** COMPRESSION_ZLIB or COMPRESSION_ZSTD; 'detect' decides by the zstd magic (a header that is gone). */
  type: number | 'detect';
  clusterSize: number;
  /**
   * false, QEMU's rules: the stream must yield a whole cluster, and a zstd frame must end within it;
   * anything else throws DecompressionError.
   * true, salvage's: whatever comes out before the stream ends or turns bad is returned (the rest of
   * the cluster zero, `produced` says how much is real), and a zstd frame running past the cluster
   * gives its first cluster. Refusals made before decoding (a frame declaring more than a cluster, a
   * window over the bound) still stop at the bytes produced so far.
   */
  lenient: boolean;
}

export interface DecompressedCluster {
  /** Exactly clusterSize bytes. */
  data: Uint8Array;
  /** Bytes that came from the stream (clusterSize unless lenient and short). */
  produced: number;
  /** Lenient only: why the output is short or was cut at the cluster. */
  problem?: string;
}

/** Largest zstd window accepted: what zstd levels up to 19 use; QEMU's frames use one cluster. */
export const ZSTD_MAX_WINDOW = 8 * 1024 * 1024;
/** Deflate output allowed past the cluster while finding where the cluster ends in a longer stream. */
export const DEFLATE_SLACK = 16 * 1024;

export function isZstdFrame(buf: Uint8Array): boolean {
  return buf.length >= 4 && le32(buf, 0) === ZSTD_MAGIC;
}

/** Decompress one cluster's stream (bytes from the descriptor's offset to the end of its last sector). */
export function decompressCluster(input: Uint8Array, opts: DecompressOptions): DecompressedCluster {
  const zstd = opts.type === 'detect' ? isZstdFrame(input) : opts.type === C.COMPRESSION_ZSTD;
  const out = new Uint8Array(opts.clusterSize);
  const r = zstd ? inflateZstd(input, out) : inflateDeflate(input, out);
  if (r.problem !== undefined && !opts.lenient) throw new DecompressionError(r.problem, r.produced);
  const result: DecompressedCluster = { data: out, produced: r.produced };
  if (r.problem !== undefined) result.problem = r.problem;
  return result;
}

interface Outcome {
  produced: number;
  problem?: string;
}

// deflate ------------------------------------------------------------------------------------------

type Attempt = { kind: 'ok'; out: Uint8Array } | { kind: 'too large' } | { kind: 'invalid'; message: string };

function inflatePrefix(input: Uint8Array, length: number, max: number): Attempt {
  try {
    // Z_SYNC_FLUSH: a stream cut short yields what it has instead of throwing.
    const out = inflateRawSync(input.subarray(0, length), { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: max });
    return { kind: 'ok', out };
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return { kind: 'too large' };
    return { kind: 'invalid', message: (e as Error).message };
  }
}

/**
 * QEMU inflates until the cluster is full and ignores the rest of the stream. Node cannot stop a
 * one-shot inflate early, so when the whole input runs past the cluster (or turns invalid) we look
 * for the input prefix whose output covers the cluster; output grows with the prefix, and one more
 * input byte adds far less than DEFLATE_SLACK, so the search ends with such a prefix if one exists.
 */
function inflateDeflate(input: Uint8Array, out: Uint8Array): Outcome {
  const cs = out.length;
  const max = cs + DEFLATE_SLACK;
  const whole = inflatePrefix(input, input.length, max);
  if (whole.kind === 'ok') return deflateDone(whole.out, out);
  let lo = 0; // longest prefix known to give less than a cluster
  let loOut: Uint8Array = new Uint8Array(0);
  let hi = input.length; // shortest prefix known to give too much or be invalid
  let hiAttempt: Attempt = whole;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const r = inflatePrefix(input, mid, max);
    if (r.kind === 'ok' && r.out.length < cs) {
      lo = mid;
      loOut = r.out;
    } else if (r.kind === 'ok') return deflateDone(r.out, out);
    else {
      hi = mid;
      hiAttempt = r;
    }
  }
  out.set(loOut.subarray(0, cs));
  if (hiAttempt.kind === 'invalid')
    return {
      produced: loOut.length,
      problem: `invalid deflate stream after ${loOut.length} of ${cs} bytes: ${hiAttempt.message}`,
    };
  return {
    produced: loOut.length,
    problem: `deflate stream produces more than the cluster size (${cs} bytes) from one input byte`,
  };
}

function deflateDone(got: Uint8Array, out: Uint8Array): Outcome {
  const cs = out.length;
  out.set(got.subarray(0, cs));
  if (got.length < cs)
    return { produced: got.length, problem: `deflate stream ends after ${got.length} of ${cs} bytes` };
  return { produced: cs };
}

// zstd ---------------------------------------------------------------------------------------------

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_SKIPPABLE_MASK = 0xfffffff0;
const ZSTD_SKIPPABLE_MAGIC = 0x184d2a50;
/** A zstd block never holds more than 128 KiB of content. */
const ZSTD_BLOCK_MAX = 128 * 1024;

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function leN(b: Uint8Array, o: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[o + i]!;
  return v;
}

export interface ZstdFrameHeader {
  /** Bytes of the header (magic included). */
  headerLength: number;
  /** Declared content size, when the frame records it. */
  contentSize?: number;
  /** Bytes of history the decoder must keep. */
  windowSize: number;
  checksum: boolean;
  dictionaryId: number;
}

/** The header of the zstd frame at `pos`; undefined when the bytes there are not one (or are cut short). */
export function zstdFrameHeader(b: Uint8Array, pos: number): ZstdFrameHeader | undefined {
  if (pos + 5 > b.length || le32(b, pos) !== ZSTD_MAGIC) return undefined;
  const fhd = b[pos + 4]!;
  if (fhd & 0x08) return undefined; // reserved bit
  const singleSegment = (fhd >> 5) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsFlag = fhd >> 6;
  const fcsBytes = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  let p = pos + 5;
  const wd = singleSegment ? undefined : b[p++];
  const headerLength = p - pos + dictBytes + fcsBytes;
  if (pos + headerLength > b.length) return undefined;
  const dictionaryId = leN(b, p, dictBytes);
  p += dictBytes;
  let contentSize: number | undefined;
  if (fcsBytes > 0) contentSize = leN(b, p, fcsBytes) + (fcsBytes === 2 ? 256 : 0);
  let windowSize: number;
  if (wd !== undefined) {
    const base = 2 ** (10 + (wd >> 3));
    windowSize = base + (base / 8) * (wd & 7);
  } else windowSize = contentSize ?? 0;
  const h: ZstdFrameHeader = { headerLength, windowSize, checksum: ((fhd >> 2) & 1) === 1, dictionaryId };
  if (contentSize !== undefined) h.contentSize = contentSize;
  return h;
}

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
  if (pos + 8 <= b.length && (le32(b, pos) & ZSTD_SKIPPABLE_MASK) === ZSTD_SKIPPABLE_MAGIC) {
    const n = 8 + le32(b, pos + 4);
    return pos + n <= b.length ? { length: n, maxOutput: 0 } : undefined;
  }
  const h = zstdFrameHeader(b, pos);
  if (!h) return undefined;
  let maxOutput = 0;
  let p = pos + h.headerLength;
  for (;;) {
    if (p + 3 > b.length) return undefined;
    const bh = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);
    p += 3;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) return undefined;
    p += type === 1 ? 1 : size;
    maxOutput += type === 2 ? ZSTD_BLOCK_MAX : size;
    if (p > b.length) return undefined;
    if (bh & 1) break;
  }
  p += h.checksum ? 4 : 0;
  return p <= b.length ? { length: p - pos, maxOutput } : undefined;
}

/** Thrown from the decoder's output callback to stop it at the cluster's end. */
class PastCluster {}

/**
 * QEMU decodes frame after frame until the cluster is full; the frame that fills it must end there
 * (ZSTD_decompressStream returns 0), else -EIO. Bytes after that frame are ignored.
 */
function inflateZstd(input: Uint8Array, out: Uint8Array): Outcome {
  const cs = out.length;
  let produced = 0;
  let pos = 0;
  while (produced < cs) {
    if (pos + 8 <= input.length && (le32(input, pos) & ZSTD_SKIPPABLE_MASK) === ZSTD_SKIPPABLE_MAGIC) {
      const info = zstdFrameInfo(input, pos);
      if (!info) return { produced, problem: `zstd skippable frame at byte ${pos} runs past the stream` };
      pos += info.length;
      continue;
    }
    const h = zstdFrameHeader(input, pos);
    if (!h)
      return {
        produced,
        problem:
          produced === 0
            ? 'invalid zstd stream: no frame at the cluster offset'
            : `zstd stream ends after ${produced} of ${cs} bytes`,
      };
    // Refused before any work: these would make the decoder allocate or produce far too much.
    if (h.contentSize !== undefined && h.contentSize > cs - produced)
      return {
        produced,
        problem:
          produced === 0
            ? `zstd frame declares ${h.contentSize} bytes of content, more than the cluster size (${cs} bytes)`
            : `zstd frame declares ${h.contentSize} bytes of content, more than the ${cs - produced} bytes left of the cluster`,
      };
    if (h.windowSize > Math.max(cs, ZSTD_MAX_WINDOW))
      return { produced, problem: `zstd frame needs a window of ${h.windowSize} bytes, more than ${ZSTD_MAX_WINDOW}` };
    if (h.dictionaryId !== 0) return { produced, problem: `zstd frame needs dictionary ${h.dictionaryId}` };
    const info = zstdFrameInfo(input, pos);
    const frame = input.subarray(pos, info ? pos + info.length : input.length);
    let overflow = false;
    const d = new Decompress((chunk) => {
      const take = Math.min(chunk.length, cs - produced);
      out.set(chunk.subarray(0, take), produced);
      produced += take;
      if (take < chunk.length) {
        overflow = true;
        throw new PastCluster();
      }
    });
    try {
      d.push(frame, info !== undefined);
    } catch (e) {
      if (!(e instanceof PastCluster))
        return { produced, problem: `invalid zstd frame after ${produced} of ${cs} bytes: ${(e as Error).message}` };
    }
    if (overflow) return { produced, problem: `zstd frame produces more than the cluster size (${cs} bytes)` };
    if (!info)
      return {
        produced,
        problem:
          produced < cs
            ? `zstd stream ends after ${produced} of ${cs} bytes`
            : 'zstd frame is cut short after the cluster',
      };
    pos += info.length;
  }
  return { produced };
}
