// The guest disk as a raw file. Resolution comes from GuestReader; this file only decides how to
// move bytes fast: host-contiguous data is read in large requests, several requests are in flight,
// and nothing is written where the guest reads zeros (the output is truncated to the virtual size
// first, so those ranges stay holes).
import type { PositionalIO } from '../io/positional-io.js';
import { CancelToken, type ProgressSink } from '../service/progress.js';
import type { ImageChain } from './backing-chain.js';
import { GuestReader, PieceKind, readHost, type Piece } from './guest-reader.js';

export interface ExportOptions {
  /** Export an internal snapshot of the top image (ID or name). */
  snapshot?: string;
  progress?: ProgressSink;
  cancel?: CancelToken;
  /**
   * The output cannot have holes (a pipe or device): write zeros explicitly instead of skipping
   * them, and do not truncate.
   */
  dense?: boolean;
}

export interface ExportResult {
  /** Bytes of the raw output (the virtual size). */
  size: number;
  /** Bytes actually written (non-zero data). */
  written: number;
}

/** Largest single read or write. */
const MAX_IO = 8 * 1024 * 1024;
/** Guest bytes resolved per step (bounds the pieces held in memory). */
const WINDOW = 256 * 1024 * 1024;
/** Requests in flight (libuv's thread pool has 4 threads). */
const IN_FLIGHT = 4;
/** Granularity of zero detection inside data, as qemu-img convert's default -S 4k. */
const ZERO_BLOCK = 4096;
const ZEROS = new Uint8Array(MAX_IO);

/** Write the guest disk of `chain` (or of one of its top image's snapshots) to `out`. */
export async function exportRaw(chain: ImageChain, out: PositionalIO, opts: ExportOptions = {}): Promise<ExportResult> {
  const reader = await GuestReader.open(chain, { snapshot: opts.snapshot });
  const cancel = opts.cancel ?? CancelToken.none;
  const size = reader.size;
  if (!opts.dense) await out.truncate(size);
  const result: ExportResult = { size, written: 0 };
  const pool = new Pool(IN_FLIGHT);

  // A batch: guest-contiguous data pieces, host-contiguous in one file.
  let batch: { guest: number; length: number; file: PositionalIO; host: number; depth: number } | undefined;
  const flush = () => {
    if (!batch) return;
    const b = batch;
    batch = undefined;
    return pool.run(async () => {
      const data = await readHost(b.file, b.host, b.length, reader.layerName(b.depth));
      result.written += await writeNonZero(out, b.guest, data, !!opts.dense);
    });
  };

  const onPiece = async (p: Piece) => {
    if (p.kind === PieceKind.Data) {
      if (batch && batch.file === p.file && batch.guest + batch.length === p.guest
        && batch.host + batch.length === p.host && batch.length + p.length <= MAX_IO) {
        batch.length += p.length;
        return;
      }
      await flush();
      // Long pieces are split so that no single request exceeds MAX_IO.
      for (let done = 0; done < p.length; done += MAX_IO) {
        const n = Math.min(MAX_IO, p.length - done);
        batch = { guest: p.guest + done, length: n, file: p.file!, host: p.host! + done, depth: p.depth };
        if (done + n < p.length) await flush();
      }
      return;
    }
    await flush();
    if (p.kind === PieceKind.Compressed) {
      const cluster = await reader.compressedCluster(p);
      const from = p.guest - p.clusterStart!;
      await pool.run(async () => {
        result.written += await writeNonZero(out, p.guest, cluster.subarray(from, from + p.length), !!opts.dense);
      });
    } else if (opts.dense) {
      for (let done = 0; done < p.length; done += MAX_IO) {
        const n = Math.min(MAX_IO, p.length - done);
        await pool.run(() => out.write(p.guest + done, ZEROS.subarray(0, n)));
      }
    }
  };

  for (let off = 0; off < size; off += WINDOW) {
    cancel.throwIfCancelled();
    await reader.resolve(off, Math.min(WINDOW, size - off), onPiece);
    await flush();
    opts.progress?.({ fraction: Math.min(1, (off + WINDOW) / size), stage: 'export' });
  }
  await flush();
  await pool.drain();
  if (size === 0) opts.progress?.({ fraction: 1, stage: 'export' });
  return result;
}

/**
 * Write the non-zero parts of `data` (at guest offset `at`), skipping all-zero blocks of 4 KiB
 * aligned on the guest offset. Returns bytes written.
 */
async function writeNonZero(out: PositionalIO, at: number, data: Uint8Array, dense: boolean): Promise<number> {
  if (dense) {
    await out.write(at, data);
    return data.length;
  }
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let written = 0;
  let runStart = -1;
  let pos = 0;
  const writes: Promise<void>[] = [];
  while (pos < buf.length) {
    const blockEnd = Math.min(buf.length, ZERO_BLOCK * (Math.floor((at + pos) / ZERO_BLOCK) + 1) - at);
    const zero = buf.subarray(pos, blockEnd).equals(ZEROS.subarray(0, blockEnd - pos));
    if (!zero && runStart < 0) runStart = pos;
    if (zero && runStart >= 0) {
      writes.push(out.write(at + runStart, data.subarray(runStart, pos)));
      written += pos - runStart;
      runStart = -1;
    }
    pos = blockEnd;
  }
  if (runStart >= 0) {
    writes.push(out.write(at + runStart, data.subarray(runStart)));
    written += buf.length - runStart;
  }
  await Promise.all(writes);
  return written;
}

/** At most `limit` async jobs at once; the first failure is rethrown by run() or drain(). */
class Pool {
  private readonly active = new Set<Promise<void>>();
  private failure: unknown;
  private failed = false;

  constructor(private readonly limit: number) {}

  async run(job: () => Promise<unknown>): Promise<void> {
    this.check();
    while (this.active.size >= this.limit) {
      await Promise.race(this.active);
      this.check();
    }
    const p: Promise<void> = job().then(() => undefined, (e) => {
      if (!this.failed) {
        this.failed = true;
        this.failure = e;
      }
    }).finally(() => this.active.delete(p));
    this.active.add(p);
  }

  async drain(): Promise<void> {
    while (this.active.size) await Promise.race(this.active);
    this.check();
  }

  private check(): void {
    if (this.failed) throw this.failure;
  }
}
