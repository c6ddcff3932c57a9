// Compressed clusters: raw deflate (QEMU's "zlib") or zstd frames, told apart by the zstd magic
// when the header that names the compression type is gone.
import { inflateRawSync, constants as zc } from 'node:zlib';
import { Decompress } from 'fzstd';
import { COMPRESSION_ZSTD } from '../format/constants.js';

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

export function isZstdFrame(buf: Uint8Array): boolean {
  return buf.length >= 4 && ZSTD_MAGIC.every((b, i) => buf[i] === b);
}

/**
 * Decompress one cluster's stream. Returns exactly `clusterSize` bytes, or undefined when the
 * stream is damaged or cut short (the caller reports the cluster as lost).
 */
export function decompressCluster(input: Uint8Array, clusterSize: number, type?: number): Uint8Array | undefined {
  const zstd = type === undefined ? isZstdFrame(input) : type === COMPRESSION_ZSTD;
  try {
    if (zstd) {
      const out = new Uint8Array(clusterSize);
      let got = 0;
      const d = new Decompress((chunk) => {
        const n = Math.min(chunk.length, clusterSize - got);
        out.set(chunk.subarray(0, n), got);
        got += n;
      });
      // Frames until one cluster is produced; bytes after that are the sector's padding, which
      // the decoder may reject once the cluster is complete.
      try {
        d.push(input, true);
      } catch {
        /* judged by the output length below */
      }
      return got === clusterSize ? out : undefined;
    }
    const out = inflateRawSync(input, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
    return out.length === clusterSize ? new Uint8Array(out.buffer, out.byteOffset, out.length) : undefined;
  } catch {
    return undefined;
  }
}
