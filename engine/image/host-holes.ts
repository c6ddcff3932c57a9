// Whether a range of a host file is a hole, as QEMU's file driver answers it with
// lseek(SEEK_DATA/SEEK_HOLE). Node has no lseek, so this is an approximation: a file whose blocks
// cover its whole length has no holes, an unallocated file is all hole, and otherwise an aligned
// 4 KiB block that reads as all zeros is taken for a hole. The approximation differs from QEMU
// only where zeros were explicitly written (e.g. the first 4 KiB that `qemu-img create -f raw`
// allocates), which QEMU reports as data.
import type { PositionalIO } from '../io/positional-io.js';

/** Granularity of the content probe (a typical file-system block). */
const PROBE_BLOCK = 4096;
/** Bytes read per probe request. */
const PROBE_CHUNK = 1024 * 1024;
const ZEROS = new Uint8Array(PROBE_BLOCK);

export interface HoleStatus {
  /** The range reads as a hole (zeros not backed by storage). */
  hole: boolean;
  /** Bytes from the queried offset with this status (> 0). */
  length: number;
  /** The run reaches the end of the file. */
  eof: boolean;
}

export class HostHoles {
  private fileSize = -1;

  constructor(private readonly io: PositionalIO, private readonly allocatedBytes: number | undefined) {}

  /** Status of [off, off+max) in the file; `off` must be below the file size. */
  async status(off: number, max: number): Promise<HoleStatus> {
    if (this.fileSize < 0) this.fileSize = await this.io.size();
    const size = this.fileSize;
    const end = Math.min(off + max, size);
    // Whole-file answers without reading.
    if (this.allocatedBytes === undefined || this.allocatedBytes >= size)
      return { hole: false, length: end - off, eof: end === size };
    if (this.allocatedBytes === 0) return { hole: true, length: end - off, eof: end === size };
    let pos = off;
    let first: boolean | undefined;
    while (pos < end) {
      const chunkEnd = Math.min(end, Math.floor(pos / PROBE_BLOCK) * PROBE_BLOCK + PROBE_CHUNK);
      const blockStart = Math.floor(pos / PROBE_BLOCK) * PROBE_BLOCK;
      const readEnd = Math.min(size, Math.ceil(chunkEnd / PROBE_BLOCK) * PROBE_BLOCK);
      const buf = Buffer.from(await this.io.read(blockStart, readEnd - blockStart));
      for (let b = 0; b < buf.length && pos < end; b += PROBE_BLOCK) {
        const block = buf.subarray(b, Math.min(buf.length, b + PROBE_BLOCK));
        const hole = block.equals(ZEROS.subarray(0, block.length));
        if (first === undefined) first = hole;
        else if (hole !== first) return { hole: first, length: pos - off, eof: false };
        pos = Math.min(end, blockStart + b + PROBE_BLOCK);
      }
      if (buf.length === 0) break;
    }
    return { hole: first ?? true, length: end - off, eof: end === size };
  }
}
