// Reads many fixed-size tables (L2 tables, refcount blocks) with few large sequential reads:
// offsets are sorted, adjacent ranges are merged into runs, and runs are read a few at a time.
import type { PositionalIO } from '../io/positional-io.js';

/** Largest single read: big enough to stream, small enough to keep memory bounded. */
const MAX_RUN_BYTES = 8 * 1024 * 1024;
/** Reads kept in flight at once. */
const CONCURRENCY = 4;

/**
 * Read `length` bytes at each offset. Returns a map offset → bytes (zero-padded past end of file;
 * ranges wholly past end of file share one zero buffer, which callers must not modify).
 */
export async function readRanges(io: PositionalIO, fileSize: number, offsets: number[], length: number,
  zeros: Uint8Array): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  const sorted = Array.from(new Set(offsets)).sort((a, b) => a - b);
  const runs: Array<{ start: number; end: number; members: number[] }> = [];
  for (const off of sorted) {
    if (off >= fileSize || !Number.isSafeInteger(off + length)) {
      out.set(off, zeros);
      continue;
    }
    const last = runs[runs.length - 1];
    if (last && off <= last.end && off + length - last.start <= MAX_RUN_BYTES) {
      last.end = Math.max(last.end, off + length);
      last.members.push(off);
    } else {
      runs.push({ start: off, end: off + length, members: [off] });
    }
  }
  for (let i = 0; i < runs.length; i += CONCURRENCY) {
    await Promise.all(runs.slice(i, i + CONCURRENCY).map(async (r) => {
      const want = r.end - r.start;
      let buf = await io.read(r.start, want);
      if (buf.length < want) {
        const padded = new Uint8Array(want);
        padded.set(buf);
        buf = padded;
      }
      for (const m of r.members) out.set(m, buf.subarray(m - r.start, m - r.start + length));
    }));
  }
  return out;
}
