import { readPadded, type PositionalIO } from '../io/positional-io.js';

/** Bytes read at once when walking a table; keeps memory bounded whatever the header claims. */
export const TABLE_CHUNK = 1 << 20;

/**
 * Visit the 8-byte entries of the table at [offset, offset+length) as (hi, lo) halves, reading in
 * bounded chunks and never past `fileSize` (entries past end of file read as zero, as QEMU pads).
 * `stride` is the distance between entries (8, or 16 for extended L2 entries).
 */
export async function forEachEntry(
  io: PositionalIO,
  offset: number,
  length: number,
  fileSize: number,
  visit: (index: number, hi: number, lo: number, chunk: Uint8Array, at: number) => void,
  stride = 8,
): Promise<void> {
  const end = Math.min(offset + length, fileSize);
  if (offset >= end) return;
  const chunkBytes = Math.max(stride, Math.floor(TABLE_CHUNK / stride) * stride);
  let index = 0;
  for (let pos = offset; pos < end; pos += chunkBytes) {
    const n = Math.min(chunkBytes, end - pos);
    const buf = await readPadded(io, pos, Math.ceil(n / stride) * stride);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let at = 0; at + 8 <= buf.length; at += stride, index++) {
      visit(index, view.getUint32(at), view.getUint32(at + 4), buf, at);
    }
  }
}
