// The ground truth of a base (what the guest reads on the intact image, as QEMU read it) and the
// sector-by-sector comparison of another raw reading against it. A guest disk of 64 MiB holds a few
// MiB of data: the truth keeps only its non-zero 64 KiB blocks, and a reading is compared in chunks
// through one reused buffer, so a case allocates no disk-sized buffers (which made every later
// fork of the process slow, and cost a page fault per 4 KiB).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export const SECTOR = 512;
const BLOCK = 64 * 1024;
const CHUNK = 64 * BLOCK;
const ZERO = Buffer.alloc(BLOCK);
let chunkBuf: Buffer | undefined;

export interface Truth {
  size: number;
  /** The non-zero 64 KiB blocks by index; every other block reads as zeros. */
  blocks: Map<number, Buffer>;
  /** 1 for each sector that holds a non-zero byte. */
  nonZero: Uint8Array;
}

/** Read `size` bytes of `fd` from `pos` into the start of `buf` (fewer when the file ends first). */
function readAt(fd: number, buf: Buffer, size: number, pos: number): number {
  let done = 0;
  while (done < size) {
    const n = readSync(fd, buf, done, size - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Call `each(chunk, offset, length)` over the first `size` bytes of `file`, zeros past its end. */
function chunks(file: string, size: number, each: (chunk: Buffer, at: number, fileLength: number) => void): void {
  chunkBuf ??= Buffer.allocUnsafe(CHUNK);
  const fd = openSync(file, 'r');
  try {
    const length = fstatSync(fd).size;
    for (let at = 0; at < size; at += CHUNK) {
      const want = Math.min(CHUNK, size - at);
      const got = readAt(fd, chunkBuf, Math.max(0, Math.min(want, length - at)), at);
      chunkBuf.fill(0, got, want);
      each(chunkBuf, at, length);
    }
  } finally {
    closeSync(fd);
  }
}

/** The truth in `raw` (a raw reading of the intact image, `size` bytes long). */
export function readTruth(raw: string): Truth {
  const fd = openSync(raw, 'r');
  const size = fstatSync(fd).size;
  closeSync(fd);
  const blocks = new Map<number, Buffer>();
  const nonZero = new Uint8Array(Math.ceil(size / SECTOR));
  chunks(raw, size, (chunk, at) => {
    for (let o = 0; o < CHUNK && at + o < size; o += BLOCK) {
      const len = Math.min(BLOCK, size - at - o);
      if (chunk.compare(ZERO, 0, len, o, o + len) === 0) continue;
      blocks.set((at + o) / BLOCK, Buffer.from(chunk.subarray(o, o + len)));
      for (let s = o; s < o + len; s += SECTOR) {
        const e = Math.min(o + len, s + SECTOR);
        if (chunk.compare(ZERO, 0, e - s, s, e) !== 0) nonZero[(at + s) / SECTOR] = 1;
      }
    }
  });
  return { size, blocks, nonZero };
}

/**
 * 1 for each sector of the truth that `file` (a raw reading) holds byte for byte; a sector past the
 * file's end matches when the truth reads zeros there (a short file reads as zeros past its end);
 * bytes past the truth's end (a damaged header that says the disk is larger) are not compared.
 * No file (the reading failed): nothing matches.
 */
export function matchFile(truth: Truth, file: string | undefined): Uint8Array {
  const mask = new Uint8Array(truth.nonZero.length);
  if (file === undefined) return mask;
  chunks(file, truth.size, (chunk, at, length) => {
    for (let o = 0; o < CHUNK && at + o < truth.size; o += BLOCK) {
      const start = at + o;
      const len = Math.min(BLOCK, truth.size - start);
      const t = truth.blocks.get(start / BLOCK) ?? ZERO;
      // Whole blocks first: most of a disk matches, and one compare beats 128.
      if (start + len <= length && chunk.compare(t, 0, len, o, o + len) === 0) {
        mask.fill(1, start / SECTOR, Math.ceil((start + len) / SECTOR));
        continue;
      }
      for (let s = 0; s < len; s += SECTOR) {
        const e = Math.min(len, s + SECTOR);
        const i = (start + s) / SECTOR;
        if (start + e > length) mask[i] = truth.nonZero[i] ? 0 : 1;
        else if (chunk.compare(t, s, e, o + s, o + e) === 0) mask[i] = 1;
      }
    }
  });
  return mask;
}
