// Whether a range of a host file is a hole, as QEMU's file driver answers it (file-posix
// find_allocation with lseek SEEK_DATA/SEEK_HOLE). Shortcuts first: a file whose blocks cover its
// whole length has no holes, an unallocated file is all hole. Otherwise the answer comes from the
// SEEK_DATA/SEEK_HOLE helper (seek-probe.ts); without it, an aligned 4 KiB block that reads as all
// zeros is taken for a hole — an approximation that differs from QEMU where zeros were explicitly
// written (e.g. the first 4 KiB that `qemu-img create -f raw` allocates).
import type { PositionalIO } from '../io/positional-io.js';
import type { SeekProbe } from './seek-probe.js';

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
  private seekable: boolean | undefined;
  /** Last SEEK answer: from `from`, data starts at `data` and the next hole at `hole`. */
  private last: { from: number; data: number; hole: number } | undefined;

  constructor(
    private readonly io: PositionalIO,
    private readonly allocatedBytes: number | undefined,
    /** Local path of the file (for the SEEK helper). */
    private readonly path?: string,
    private readonly probe?: () => Promise<SeekProbe | undefined>,
  ) {}

  /** Status of [off, off+max) in the file; `off` must be below the file size. */
  async status(off: number, max: number): Promise<HoleStatus> {
    if (this.fileSize < 0) this.fileSize = await this.io.size();
    const size = this.fileSize;
    const end = Math.min(off + max, size);
    // Whole-file answers without reading.
    if (this.allocatedBytes === undefined || this.allocatedBytes >= size)
      return { hole: false, length: end - off, eof: end === size };
    if (this.allocatedBytes === 0) return { hole: true, length: end - off, eof: end === size };
    const sought = await this.bySeek(off, end);
    if (sought) return { ...sought, eof: off + sought.length === size };
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

  /** file-posix raw_co_block_status over find_allocation; undefined without the helper. */
  private async bySeek(off: number, end: number): Promise<{ hole: boolean; length: number } | undefined> {
    const l = this.last;
    if (l && off >= l.from && off < l.hole) {
      return off < l.data
        ? { hole: true, length: Math.min(end, l.data) - off }
        : { hole: false, length: Math.min(end, l.hole) - off };
    }
    if (this.seekable === false || !this.path || !this.probe) return undefined;
    const probe = await this.probe();
    if (this.seekable === undefined) this.seekable = !!probe && (await probe.open(this.path));
    if (!this.seekable || !probe) return undefined;
    const a = await probe.seek(this.path, off);
    if (a === 'enxio') return { hole: true, length: end - off }; // trailing hole
    if (a === 'error' || a.data < off || a.hole <= a.data) return { hole: false, length: end - off };
    this.last = { from: off, data: a.data, hole: a.hole };
    return a.data > off
      ? { hole: true, length: Math.min(end, a.data) - off }
      : { hole: false, length: Math.min(end, a.hole) - off };
  }
}
