// Reads many fixed-size tables with few large reads: offsets sorted, adjacent tables merged into
// one read (up to MAX_RUN_BYTES), zero-padded past the end of the file as QEMU pads.
import type { PositionalIO } from '../../io/positional-io.js';

const MAX_RUN_BYTES = 4 << 20;
/** Reads in flight at once. */
const CONCURRENCY = 4;

/** Tables of `size` bytes at `offsets` (aligned, starting inside the file), keyed by offset. */
export async function readTables(
  io: PositionalIO,
  fileSize: number,
  offsets: readonly number[],
  size: number,
): Promise<Map<number, Uint8Array>> {
  const sorted = [...new Set(offsets)].sort((a, b) => a - b);
  const runs: Array<{ start: number; count: number }> = [];
  for (const off of sorted) {
    const last = runs[runs.length - 1];
    if (last && last.start + last.count * size === off && (last.count + 1) * size <= MAX_RUN_BYTES) last.count++;
    else runs.push({ start: off, count: 1 });
  }
  const out = new Map<number, Uint8Array>();
  const readRun = async (run: { start: number; count: number }): Promise<void> => {
    const bytes = run.count * size;
    const want = Math.max(0, Math.min(bytes, fileSize - run.start));
    let buf = want > 0 ? await io.read(run.start, want) : new Uint8Array(0);
    if (buf.length < bytes) {
      const padded = new Uint8Array(bytes);
      padded.set(buf);
      buf = padded;
    }
    for (let k = 0; k < run.count; k++) out.set(run.start + k * size, buf.subarray(k * size, (k + 1) * size));
  };
  for (let i = 0; i < runs.length; i += CONCURRENCY) await Promise.all(runs.slice(i, i + CONCURRENCY).map(readRun));
  return out;
}
