// Beyond QEMU: does compressed data actually decompress? QEMU's check never looks. We decode a
// bounded sample (the first compressed clusters met in the active tables) so the cost stays small.
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';

export const MAX_COMPRESSED_SAMPLES = 32;

export interface CompressedSample {
  offset: number;
  size: number;
  l2Offset: number;
  index: number;
  guestOffset: number;
}

/** True when the stream at [offset, offset+size) yields one cluster by QEMU's rules. */
export async function decodes(image: Qcow2Image, offset: number, size: number): Promise<boolean> {
  const cs = image.clusterSize;
  if (offset >= image.fileSize) return false;
  const input = await readPadded(image.io, offset, Math.min(size, 2 * cs + 4096));
  // The decoders are loaded on first use: most checks meet no compressed cluster.
  const { decompressCluster, DecompressionError } = await import('../image/compressed.js');
  try {
    decompressCluster(input, { type: image.header.compressionType, clusterSize: cs, lenient: false });
    return true;
  } catch (e) {
    if (e instanceof DecompressionError) return false;
    throw e;
  }
}
