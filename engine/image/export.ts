// The guest disk as a raw file. Resolution comes from GuestReader; this file only decides how to
// move bytes fast: host-contiguous data is read in large requests, several requests are in flight,
// and nothing is written where the guest reads zeros (the output is truncated to the virtual size
// first, so those ranges stay holes).
import { read, write } from 'node:fs';
import type { PositionalIO } from '../io/positional-io.js';
import { FileIO } from '../io/file-io.js';
import { UnreadableError } from '../base/errors.js';
import { CancelToken, type ProgressSink } from '../base/task-control.js';
import type { ImageChain } from './backing-chain.js';
import { GuestReader, PieceKind, type Piece } from './guest-reader.js';
import { hexAlt } from './layer-map.js';

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
  /**
   * The output is a stream (pipe, terminal): bytes are written in guest order without seeking,
   * zeros included. Implies `dense`.
   */
  stream?: boolean;
}

export interface ExportResult {
  /** Bytes of the raw output (the virtual size). */
  size: number;
  /** Bytes actually written (non-zero data). */
  written: number;
}

/** Largest single read or write. */
const MAX_IO = 8 * 1024 * 1024;
/** Least guest progress between two progress events. */
const PROGRESS_STEP = 16 * 1024 * 1024;
/** Requests in flight (libuv's thread pool has 4 threads). */
const IN_FLIGHT = 4;
/** Granularity of zero detection inside data, as qemu-img convert's default -S 4k. */
const ZERO_BLOCK = 4096;
const ZEROS = Buffer.alloc(ZERO_BLOCK);

/** One guest-contiguous output run being assembled: reads and decompressed clusters. */
interface Batch {
  guest: number;
  length: number;
  ops: Op[];
}

type Op =
  | { kind: 'read'; at: number; length: number; file: PositionalIO; host: number; depth: number }
  | { kind: 'compressed'; at: number; piece: Piece }
  | { kind: 'zero'; at: number; length: number };

/** Write the guest disk of `chain` (or of one of its top image's snapshots) to `out`. */
export async function exportRaw(chain: ImageChain, out: PositionalIO, opts: ExportOptions = {}): Promise<ExportResult> {
  const reader = await GuestReader.open(chain, { snapshot: opts.snapshot });
  const cancel = opts.cancel ?? CancelToken.none;
  const stream = !!opts.stream;
  const dense = !!opts.dense || stream;
  const size = reader.size;
  if (!dense) await out.truncate(size);
  const result: ExportResult = { size, written: 0 };
  // A stream takes its bytes in order: one request at a time.
  const pool = new Pool(stream ? 1 : IN_FLIGHT);
  // Buffers are reused: large fresh allocations cost more than the copies they hold.
  const buffers: Buffer[] = [];
  const take = () => buffers.pop() ?? Buffer.allocUnsafeSlow(MAX_IO);

  let batch: Batch | undefined;
  const flush = async () => {
    if (!batch) return;
    const b = batch;
    batch = undefined;
    await pool.run(async () => {
      const buf = take();
      try {
        await fill(reader, b, buf);
        result.written += await writeNonZero(out, b.guest, buf.subarray(0, b.length), dense, stream);
      } finally {
        buffers.push(buf);
      }
    });
  };
  /** Append `length` guest bytes at `guest` to the current batch, starting a new one if needed. */
  const append = async (guest: number, length: number, make: (at: number, n: number, done: number) => Op) => {
    for (let done = 0; done < length; ) {
      if (batch && (batch.guest + batch.length !== guest + done || batch.length === MAX_IO)) await flush();
      if (!batch) batch = { guest: guest + done, length: 0, ops: [] };
      const n = Math.min(length - done, MAX_IO - batch.length);
      const op = make(batch.length, n, done);
      const last = batch.ops[batch.ops.length - 1];
      // Host-contiguous reads from one file become one read.
      if (
        op.kind === 'read' &&
        last?.kind === 'read' &&
        last.file === op.file &&
        last.host + last.length === op.host &&
        last.at + last.length === op.at
      )
        last.length += op.length;
      else if (op.kind === 'zero' && last?.kind === 'zero' && last.at + last.length === op.at) last.length += op.length;
      else batch.ops.push(op);
      batch.length += n;
      done += n;
    }
  };

  const onPiece = async (p: Piece) => {
    switch (p.kind) {
      case PieceKind.Data:
        await append(p.guest, p.length, (at, n, done) => ({
          kind: 'read',
          at,
          length: n,
          file: p.file!,
          host: p.host! + done,
          depth: p.depth,
        }));
        break;
      case PieceKind.Compressed:
        await append(p.guest, p.length, (at) => ({ kind: 'compressed', at, piece: p }));
        break;
      case PieceKind.Zero:
        // Zeros stay holes; only an output without holes needs them written.
        if (dense) await append(p.guest, p.length, (at, n) => ({ kind: 'zero', at, length: n }));
        else await flush();
        break;
    }
  };

  // Progress and cancellation ride on the pieces (one resolution pass over the whole disk: pieces
  // are handled as they come, so nothing accumulates however large the disk is).
  let reported = 0;
  const step = Math.max(PROGRESS_STEP, size / 1000);
  const visit = async (p: Piece) => {
    cancel.throwIfCancelled();
    await onPiece(p);
    const done = p.guest + p.length;
    if (done - reported >= step) {
      reported = done;
      opts.progress?.({ fraction: done / size, stage: 'export' });
    }
  };
  try {
    await reader.resolve(0, size, visit);
    await flush();
    await pool.drain();
  } catch (e) {
    await pool.settle();
    throw e;
  }
  opts.progress?.({ fraction: 1, stage: 'export' });
  return result;
}

/** Perform a batch's reads and copies into `buf`. */
async function fill(reader: GuestReader, b: Batch, buf: Buffer): Promise<void> {
  for (const op of b.ops) {
    if (op.kind === 'read') {
      const got = await readInto(op.file, op.host, buf, op.at, op.length);
      if (got < op.length) {
        if (got === 0 && op.host >= (await op.file.size()))
          throw new UnreadableError(
            `Data at host offset ${hexAlt(op.host)} of '${op.file.name}' is beyond its end of file (${reader.layerName(op.depth)} is truncated)`,
          );
        buf.fill(0, op.at + got, op.at + op.length);
      }
    } else if (op.kind === 'compressed') {
      const p = op.piece;
      const cluster = await reader.compressedCluster(p);
      const from = p.guest - p.clusterStart!;
      buf.set(cluster.subarray(from, from + p.length), op.at);
    } else {
      buf.fill(0, op.at, op.at + op.length);
    }
  }
}

/** Read into `buf` without an intermediate allocation when the file is a FileIO. */
async function readInto(file: PositionalIO, host: number, buf: Buffer, at: number, length: number): Promise<number> {
  if (file instanceof FileIO) {
    let done = 0;
    while (done < length) {
      const n = await new Promise<number>((resolve, reject) =>
        read(file.fd, buf, at + done, length - done, host + done, (err, bytes) => (err ? reject(err) : resolve(bytes))),
      );
      if (n === 0) break;
      done += n;
    }
    return done;
  }
  const got = await file.read(host, length);
  buf.set(got, at);
  return got.length;
}

/** Write at a guest offset; `stream`: at the current position instead (outputs that cannot seek). */
async function writeAt(out: PositionalIO, at: number, data: Buffer, stream = false): Promise<void> {
  if (out instanceof FileIO) {
    let done = 0;
    while (done < data.length) {
      done += await new Promise<number>((resolve, reject) =>
        write(out.fd, data, done, data.length - done, stream ? null : at + done, (err, n) =>
          err ? reject(err) : resolve(n),
        ),
      );
    }
    return;
  }
  await out.write(at, data);
}

/**
 * Write the non-zero parts of `data` (at guest offset `at`), skipping all-zero blocks of 4 KiB
 * aligned on the guest offset. Returns bytes written.
 */
async function writeNonZero(
  out: PositionalIO,
  at: number,
  data: Buffer,
  dense: boolean,
  stream: boolean,
): Promise<number> {
  if (dense) {
    await writeAt(out, at, data, stream);
    return data.length;
  }
  let written = 0;
  let runStart = -1;
  let pos = 0;
  const writes: Promise<void>[] = [];
  while (pos < data.length) {
    const blockEnd = Math.min(data.length, ZERO_BLOCK * (Math.floor((at + pos) / ZERO_BLOCK) + 1) - at);
    // A non-zero first or last byte settles most blocks without a compare call.
    const zero =
      data[pos] === 0 &&
      data[blockEnd - 1] === 0 &&
      data.subarray(pos, blockEnd).equals(ZEROS.subarray(0, blockEnd - pos));
    if (!zero && runStart < 0) runStart = pos;
    if (zero && runStart >= 0) {
      writes.push(writeAt(out, at + runStart, data.subarray(runStart, pos)));
      written += pos - runStart;
      runStart = -1;
    }
    pos = blockEnd;
  }
  if (runStart >= 0) {
    writes.push(writeAt(out, at + runStart, data.subarray(runStart)));
    written += data.length - runStart;
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
    const p: Promise<void> = job()
      .then(
        () => undefined,
        (e) => {
          if (!this.failed) {
            this.failed = true;
            this.failure = e;
          }
        },
      )
      .finally(() => this.active.delete(p));
    this.active.add(p);
  }

  async drain(): Promise<void> {
    while (this.active.size) await Promise.race(this.active);
    this.check();
  }

  /** Wait for every job, ignoring failures (on the error path). */
  async settle(): Promise<void> {
    while (this.active.size) await Promise.race(this.active).catch(() => undefined);
  }

  private check(): void {
    if (this.failed) throw this.failure;
  }
}
