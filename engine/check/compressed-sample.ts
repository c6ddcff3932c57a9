// Beyond QEMU: does compressed data actually decompress? QEMU's check never looks. We decode a
// bounded sample (the first compressed clusters met in the active tables) so the cost stays small.
import { constants, inflateRawSync } from 'node:zlib';
import { COMPRESSION_ZSTD } from '../format/constants.js';
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

/** True when the stream at [offset, offset+size) yields at least one cluster of output. */
export async function decodes(image: Qcow2Image, offset: number, size: number): Promise<boolean> {
  const cs = image.clusterSize;
  if (offset >= image.fileSize) return false;
  const input = await readPadded(image.io, offset, Math.min(size, 2 * cs + 4096));
  // The zstd decoder is loaded on first use: most checks meet no compressed cluster.
  if (image.header.compressionType === COMPRESSION_ZSTD) {
    const { Decompress } = await import('fzstd');
    let got = 0;
    try {
      const d = new Decompress((chunk) => {
        got += chunk.length;
      });
      d.push(input, true);
    } catch {
      // Trailing bytes after the frame(s) are ignored by QEMU once a cluster is produced.
    }
    return got >= cs;
  }
  try {
    const out = inflateRawSync(input, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: 16 * cs });
    return out.length >= cs;
  } catch {
    return false;
  }
}
