import { open, type FileHandle } from 'node:fs/promises';
import { ReadOnlyError, type PositionalIO } from './positional-io.js';

/** A PositionalIO over a regular file, using positional reads/writes and fdatasync as the barrier. */
export class FileIO implements PositionalIO {
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, opts: { write?: boolean; create?: boolean } = {}): Promise<FileIO> {
    const flags = opts.create ? 'w+' : opts.write ? 'r+' : 'r';
    const fh = await open(path, flags);
    return new FileIO(path, fh, !opts.write && !opts.create);
  }

  get fd(): number {
    return this.fh.fd;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === length ? buf : buf.subarray(0, done);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  async truncate(size: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    await this.fh.truncate(size);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
