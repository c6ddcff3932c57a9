// Compressed cluster payloads (qcow2.md §1.12): raw deflate (QEMU's "zlib") or zstd.
import { deflateRawSync, inflateRawSync, constants } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';
import { COMPRESSION_ZLIB } from '../format/constants.js';
import { UnreadableError } from '../base/errors.js';

/** Compress one cluster as QEMU does for compression_type 0 (raw deflate, no header). */
export function compressCluster(data: Uint8Array): Uint8Array {
  return deflateRawSync(data, { level: 6 });
}

/**
 * Decompress one cluster. The stored range may run past the end of the stream (the descriptor
 * counts whole sectors), so trailing bytes are ignored; the output must fill the cluster.
 */
export function decompressCluster(stored: Uint8Array, clusterSize: number, compressionType: number): Uint8Array {
  let out: Uint8Array;
  try {
    out =
      compressionType === COMPRESSION_ZLIB
        ? inflateRawSync(stored, { finishFlush: constants.Z_SYNC_FLUSH })
        : zstdDecompress(stored);
  } catch (e) {
    throw new UnreadableError(`compressed cluster does not decompress: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (out.length < clusterSize)
    throw new UnreadableError(`compressed cluster decompresses to ${out.length} bytes, expected ${clusterSize}`);
  return out.length === clusterSize
    ? new Uint8Array(out.buffer, out.byteOffset, clusterSize)
    : out.slice(0, clusterSize);
}
