// Reads many fixed-size tables (L2 tables, refcount blocks) with few large sequential reads:
// offsets are sorted, adjacent ranges are merged into runs, and runs are read a few at a time
// into reusable buffers (no garbage per batch).
import { read as fsRead, readSync } from 'node:fs';
import { FileIO } from '../../io/file-io.js';
import type { PositionalIO } from '../../io/positional-io.js';

/** Largest single read: big enough to stream, small enough to keep memory bounded. */
const MAX_RUN_BYTES = 4 * 1024 * 1024;
/** Reads kept in flight at once. */
const CONCURRENCY = 4;

/**
 * An arena for one batch's reads: carved sequentially, reset when the batch is done. It starts
 * small and grows up to `size`, so checking a tiny image costs no big allocation.
 */
export class BufferPool {
  private arena: Uint8Array = new Uint8Array(0);
  private pos = 0;
  constructor(private readonly size: number) {}

  take(size: number): Uint8Array {
    if (this.pos + size > this.arena.length) {
      if (this.pos > 0 && this.arena.length >= this.size) return new Uint8Array(size);
      // Grow: earlier slices keep the old buffer alive until the batch is released. One range always
      // fits (a 2 MiB cluster in a 1 MiB pool): a fresh buffer per table costs page faults and GC.
      this.arena = new Uint8Array(Math.max(size, Math.min(this.size, Math.max(2 * this.arena.length, 64 * 1024))));
      this.pos = 0;
    }
    const b = this.arena.subarray(this.pos, this.pos + size);
    this.pos += size;
    return b;
  }

  release(): void {
    this.pos = 0;
  }
}

/** Longest stretch of synchronous reading and walking before the event loop gets a turn (ms). */
const YIELD_MS = 20;

/**
 * Process tables batch by batch. A plain file is read with synchronous positional reads: tables
 * mostly sit apart (an L2 table per 512 MiB of data), and one pread each costs a fraction of a
 * thread-pool round trip, so this takes several times less CPU; the event loop still gets a turn
 * every YIELD_MS (progress, cancel messages) unless `yieldTurns` is false (nobody listens: a plain
 * CLI check, where the first turn alone costs ~2 ms of timer set-up). Reading ahead on the thread
 * pool does not pay here: on a virtual machine, waking a pool thread costs up to a millisecond.
 * Other sources are read asynchronously, the next batches while this one is handled (one arena per
 * batch in flight).
 * `nextBatch` returns the next batch's offsets (or undefined at the end); `handle` gets the bytes.
 */
export async function pipeline<B extends { offsets: number[] }>(
  io: PositionalIO,
  fileSize: number,
  length: number,
  zeros: Uint8Array,
  pools: BufferPool[],
  nextBatch: () => B | undefined,
  handle: (batch: B, tables: Map<number, Uint8Array>) => Promise<void> | void,
  yieldTurns = true,
): Promise<void> {
  if (io instanceof FileIO) {
    const pool = pools[0]!;
    let last = performance.now();
    for (let cur = nextBatch(); cur; cur = nextBatch()) {
      await handle(cur, readRangesSync(io.fd, fileSize, cur.offsets, length, zeros, pool));
      pool.release();
      if (yieldTurns && performance.now() - last > YIELD_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        last = performance.now();
      }
    }
    return;
  }
  // Up to one read per arena in flight, in batch order; an arena is reused once its batch is handled.
  const queue: Array<{ batch: B; read: Promise<Map<number, Uint8Array>>; pool: BufferPool }> = [];
  const issue = (pool: BufferPool): void => {
    const batch = nextBatch();
    if (batch) queue.push({ batch, read: readRanges(io, fileSize, batch.offsets, length, zeros, pool), pool });
  };
  for (const pool of pools) issue(pool);
  try {
    while (queue.length > 0) {
      const head = queue.shift()!;
      await handle(head.batch, await head.read);
      head.pool.release();
      issue(head.pool);
    }
  } catch (e) {
    for (const q of queue) q.read.catch(() => undefined);
    throw e;
  }
}

interface Run {
  start: number;
  end: number;
  members: number[];
}

/** Sort and merge the ranges into runs; ranges wholly past end of file map to `zeros` at once. */
function planRuns(
  fileSize: number,
  offsets: number[],
  length: number,
  zeros: Uint8Array,
): { out: Map<number, Uint8Array>; runs: Run[] } {
  const out = new Map<number, Uint8Array>();
  const sorted = Array.from(new Set(offsets)).sort((a, b) => a - b);
  const runs: Run[] = [];
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
  return { out, runs };
}

/** readRanges into `pool`: synchronously for a plain file (see `pipeline`). */
export function readRangesInto(
  io: PositionalIO,
  fileSize: number,
  offsets: number[],
  length: number,
  zeros: Uint8Array,
  pool: BufferPool,
): Map<number, Uint8Array> | Promise<Map<number, Uint8Array>> {
  return io instanceof FileIO
    ? readRangesSync(io.fd, fileSize, offsets, length, zeros, pool)
    : readRanges(io, fileSize, offsets, length, zeros, pool);
}

/** readRanges for a plain file descriptor, with synchronous reads into `pool`. */
function readRangesSync(
  fd: number,
  fileSize: number,
  offsets: number[],
  length: number,
  zeros: Uint8Array,
  pool: BufferPool,
): Map<number, Uint8Array> {
  const { out, runs } = planRuns(fileSize, offsets, length, zeros);
  for (const r of runs) {
    const want = r.end - r.start;
    const buf = pool.take(want);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, r.start + got);
      if (n === 0) break;
      got += n;
    }
    if (got < want) buf.fill(0, got);
    for (const m of r.members) out.set(m, buf.subarray(m - r.start, m - r.start + length));
  }
  return out;
}

function readInto(fd: number, buf: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void => {
      fsRead(fd, buf, done, buf.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        done += n;
        if (n === 0 || done === buf.length) resolve(done);
        else step();
      });
    };
    step();
  });
}

/**
 * Read `length` bytes at each offset. Returns a map offset → bytes (zero-padded past end of file;
 * ranges wholly past end of file share one zero buffer, which callers must not modify). Bytes stay
 * valid until `pool.release()`.
 */
export async function readRanges(
  io: PositionalIO,
  fileSize: number,
  offsets: number[],
  length: number,
  zeros: Uint8Array,
  pool?: BufferPool,
): Promise<Map<number, Uint8Array>> {
  const { out, runs } = planRuns(fileSize, offsets, length, zeros);
  const fd = io instanceof FileIO ? io.fd : -1;
  for (let i = 0; i < runs.length; i += CONCURRENCY) {
    await Promise.all(
      runs.slice(i, i + CONCURRENCY).map(async (r) => {
        const want = r.end - r.start;
        let buf: Uint8Array;
        if (pool && fd >= 0) {
          buf = pool.take(want);
          const got = await readInto(fd, buf, r.start);
          if (got < want) buf.fill(0, got);
        } else {
          buf = await io.read(r.start, want);
          if (buf.length < want) {
            const padded = new Uint8Array(want);
            padded.set(buf);
            buf = padded;
          }
        }
        for (const m of r.members) out.set(m, buf.subarray(m - r.start, m - r.start + length));
      }),
    );
  }
  return out;
}
