import { closeSync, fstatSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ReadOnlyError, type PositionalIO } from './positional-io.js';

/**
 * A PositionalIO over a regular file, using positional reads/writes and fdatasync as the barrier.
 * Opened by `openInputFile` with `syncReads` (read-only), it reads, sizes and closes with synchronous
 * calls: for a caller that yields to the event loop on its own (the checker, every few milliseconds), each
 * thread-pool round trip saved is up to a millisecond on a virtual machine.
 */
export class FileIO implements PositionalIO {
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle | undefined,
    private readonly rawFd: number,
    readonly readOnly: boolean,
  ) {}

  /**
   * Open a file the caller names directly (an output being written, a file this tool made). An
   * input chosen by a user or named in a header goes through `openInputFile` (io/input-file.ts),
   * which refuses what is not a regular file before reading it.
   */
  static async open(path: string, opts: { write?: boolean; create?: boolean } = {}): Promise<FileIO> {
    const readOnly = !opts.write && !opts.create;
    const flags = opts.create ? 'w+' : opts.write ? 'r+' : 'r';
    const fh = await open(path, flags);
    return new FileIO(path, fh, fh.fd, readOnly);
  }

  /** Wrap a descriptor opened elsewhere, read-only, read with synchronous calls (see `syncReads`). */
  static fromSyncFd(name: string, fd: number): FileIO {
    return new FileIO(name, undefined, fd, true);
  }

  /** Wrap a handle opened elsewhere (a confined input or a new output file); closing it closes the handle. */
  static fromHandle(name: string, fh: FileHandle, opts: { write?: boolean } = {}): FileIO {
    return new FileIO(name, fh, fh.fd, !opts.write);
  }

  get fd(): number {
    return this.rawFd;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = this.fh
        ? (await this.fh.read(buf, done, length - done, offset + done)).bytesRead
        : readSync(this.rawFd, buf, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done === length ? buf : buf.subarray(0, done);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly || !this.fh) throw new ReadOnlyError(this.name);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (!this.readOnly && this.fh) await this.fh.datasync();
  }

  async size(): Promise<number> {
    return this.fh ? (await this.fh.stat()).size : fstatSync(this.rawFd).size;
  }

  async truncate(size: number): Promise<void> {
    if (this.readOnly || !this.fh) throw new ReadOnlyError(this.name);
    await this.fh.truncate(size);
  }

  async close(): Promise<void> {
    if (this.fh) await this.fh.close();
    else closeSync(this.rawFd);
  }
}
