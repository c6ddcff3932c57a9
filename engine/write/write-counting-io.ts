// The writer's view of its file: every request passes through, and writes other than guest data
// are counted, so that a failed operation knows whether it changed any metadata on disk.
import type { PositionalIO } from '../io/positional-io.js';

export class WriteCountingIO implements PositionalIO {
  /** Writes (and truncates) other than guest data issued so far, failed ones included. */
  metadataWrites = 0;

  constructor(readonly inner: PositionalIO) {}

  get name(): string {
    return this.inner.name;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.metadataWrites++;
    return this.inner.write(offset, data);
  }

  /** Guest data into a cluster that no metadata on disk depends on yet, or in place into a cluster it owns. */
  writeData(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  truncate(size: number): Promise<void> {
    this.metadataWrites++;
    return this.inner.truncate(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  event(name: string): void {
    this.inner.event?.(name);
  }
}
