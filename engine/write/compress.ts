// Writing compressed cluster payloads (qcow2.md §1.12); reading them is image/compressed.ts.
import { deflateRawSync } from 'node:zlib';

/** Compress one cluster as QEMU does for compression_type 0 (raw deflate, no header). */
export function compressCluster(data: Uint8Array): Uint8Array {
  return deflateRawSync(data, { level: 6 });
}
