// `--record-log FILE` for the commands that write (check -r, strip, salvage -f qcow2): a PositionalIO
// wrapper that streams every write, flush and growth of the file it wraps to FILE as a
// dm-log-writes log, so `lab --replay FILE --base BASE` (or Linux's dm-log-writes tools) can
// crash-test the command's writes. The log is whole sectors: a write is widened to the sectors it
// touches with the bytes the file held there just before it (read first); a truncate that grows the
// file is logged as the zero sectors it adds. The superblock is rewritten at each flush and at close,
// as QEMU's blklogwrites does. Nothing is held in memory but the entry being written.
import { constants } from 'node:fs';
import { copyFile, type FileHandle, open, stat } from 'node:fs/promises';
import { type PositionalIO, readPadded } from '../io/positional-io.js';
import { DM_LOG_FLUSH, DM_LOG_MAGIC, DM_LOG_VERSION } from './dm-log.js';

const SECTOR = 512;
/** Growth logged as zero sectors in pieces of this size. */
const ZERO_PIECE = 1 << 20;

export class DmLogRecorder implements PositionalIO {
  private pos = SECTOR;
  private entries = 0;
  /** Why the log cannot replay the command exactly (a shrinking truncate), if it cannot. */
  incomplete: string | undefined;

  private constructor(
    readonly inner: PositionalIO,
    private readonly log: FileHandle,
    readonly path: string,
  ) {}

  /** Create the log at `path` (refusing an existing file) and wrap `inner`. */
  static async create(inner: PositionalIO, path: string): Promise<DmLogRecorder> {
    const fh = await open(path, 'wx', 0o644);
    const r = new DmLogRecorder(inner, fh, path);
    await r.writeSuper();
    return r;
  }

  get name(): string {
    return this.inner.name;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** Entries logged so far. */
  get count(): number {
    return this.entries;
  }

  private async writeSuper(): Promise<void> {
    const sb = Buffer.alloc(SECTOR);
    sb.writeBigUInt64LE(DM_LOG_MAGIC, 0);
    sb.writeBigUInt64LE(DM_LOG_VERSION, 8);
    sb.writeBigUInt64LE(BigInt(this.entries), 16);
    sb.writeUInt32LE(SECTOR, 24);
    await this.log.write(sb, 0, SECTOR, 0);
  }

  private async entry(sector: number, nr: number, flags: bigint, data?: Uint8Array): Promise<void> {
    const e = Buffer.alloc(SECTOR);
    e.writeBigUInt64LE(BigInt(sector), 0);
    e.writeBigUInt64LE(BigInt(nr), 8);
    e.writeBigUInt64LE(flags, 16);
    await this.log.write(e, 0, SECTOR, this.pos);
    this.pos += SECTOR;
    if (data) {
      await this.log.write(data, 0, data.length, this.pos);
      this.pos += data.length;
    }
    this.entries++;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const a = Math.floor(offset / SECTOR) * SECTOR;
    const b = Math.ceil((offset + data.length) / SECTOR) * SECTOR;
    let whole = data;
    if (a !== offset || b !== offset + data.length) {
      whole = (await readPadded(this.inner, a, b - a)).slice();
      whole.set(data, offset - a);
    }
    await this.inner.write(offset, data);
    // Logged once issued and completed, as blklogwrites logs.
    await this.entry(a / SECTOR, (b - a) / SECTOR, 0n, whole);
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    await this.entry(0, 0, DM_LOG_FLUSH);
    await this.writeSuper();
    await this.log.datasync();
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async truncate(size: number): Promise<void> {
    const old = await this.inner.size();
    await this.inner.truncate(size);
    if (size < old) {
      this.incomplete ??= `the file was shrunk from ${old} to ${size} bytes, which a dm-log-writes log cannot express`;
      return;
    }
    for (let a = Math.floor(old / SECTOR) * SECTOR; a < size; a += ZERO_PIECE) {
      const b = Math.min(Math.ceil(size / SECTOR) * SECTOR, a + ZERO_PIECE);
      await this.entry(a / SECTOR, (b - a) / SECTOR, 0n, await readPadded(this.inner, a, b - a));
    }
  }

  /** The wrapped file was flushed (and published) by its owner: log that flush and close the log only. */
  async finish(): Promise<void> {
    await this.entry(0, 0, DM_LOG_FLUSH);
    await this.writeSuper();
    await this.log.close();
  }

  /** Close the log (superblock final) and the wrapped file. */
  async close(): Promise<void> {
    try {
      await this.writeSuper();
      await this.log.close();
    } finally {
      await this.inner.close();
    }
  }

  event(name: string): void {
    this.inner.event?.(name);
  }
}

/**
 * What a command needs for `--record-log LOG`: refuse an existing LOG (or base) up front, then `wrap`
 * the file the command writes. With `copyBase` (a repair in place), the file as it is just before the
 * first write is copied to LOG.base.qcow2 first (exclusively; a reflink where the system offers one).
 * Without (strip, salvage: a new file, published by rename after its final flush), the base is an
 * empty file and `finish()` logs that final flush once the command has published its output.
 */
export class LogRecording {
  recorder: DmLogRecorder | undefined;
  readonly basePath: string;

  constructor(
    readonly logPath: string,
    private readonly copyBase: boolean,
  ) {
    this.basePath = `${logPath}.base.qcow2`;
  }

  /** Throws a one-line error when LOG or its base copy already exists. */
  async refuseExisting(): Promise<void> {
    for (const p of [this.logPath, this.basePath])
      if (
        await stat(p).then(
          () => true,
          () => false,
        )
      )
        throw new Error(`--record-log: ${p} already exists (the log and its base are never overwritten)`);
  }

  wrap = async (io: PositionalIO): Promise<PositionalIO> => {
    if (this.recorder) throw new Error('--record-log records one output file; this command writes several');
    if (this.copyBase) await copyFile(io.name, this.basePath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    else await (await open(this.basePath, 'wx', 0o644)).close();
    this.recorder = await DmLogRecorder.create(io, this.logPath);
    return this.recorder;
  };

  /** After a new file was published (strip, salvage): its final flush, and the log closed. */
  async finish(): Promise<void> {
    await this.recorder?.finish();
  }

  /** One line for the user: where the log is and how to replay it. */
  summary(base = this.basePath): string {
    const r = this.recorder;
    if (!r) return `write log: nothing was written, no log made`;
    const how = `replay and crash-test with: qcow2-doctor lab --replay ${this.logPath} --base ${base}`;
    return `write log: ${this.logPath} (${r.count} entries); ${r.incomplete ? `incomplete: ${r.incomplete}` : how}`;
  }
}
