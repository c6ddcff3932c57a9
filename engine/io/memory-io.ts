import { ReadOnlyError, type PositionalIO } from './positional-io.js';

/** A PositionalIO over a growable in-memory buffer (tests, the crash lab, the browser). */
export class MemoryIO implements PositionalIO {
  private buf: Uint8Array;
  private length: number;

  constructor(
    initial: Uint8Array = new Uint8Array(0),
    readonly name = 'memory',
    readonly readOnly = false,
  ) {
    this.buf = new Uint8Array(Math.max(initial.length, 4096));
    this.buf.set(initial);
    this.length = initial.length;
  }

  /** A copy of the current contents. */
  snapshot(): Uint8Array {
    return this.buf.slice(0, this.length);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(this.length, offset + length);
    return end <= offset ? new Uint8Array(0) : this.buf.slice(offset, end);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    this.ensure(offset + data.length);
    this.buf.set(data, offset);
    this.length = Math.max(this.length, offset + data.length);
  }

  async flush(): Promise<void> {}

  async size(): Promise<number> {
    return this.length;
  }

  async truncate(size: number): Promise<void> {
    if (this.readOnly) throw new ReadOnlyError(this.name);
    this.ensure(size);
    if (size < this.length) this.buf.fill(0, size, this.length);
    this.length = size;
  }

  async close(): Promise<void> {}

  private ensure(n: number): void {
    if (n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}
