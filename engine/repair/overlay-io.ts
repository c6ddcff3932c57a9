/**
 * A read-only view of an image with planned writes laid over it, so the planner can run the checker
 * on "the image as it will be" without writing anything. Writes to the overlay stay in memory.
 */
import type { PositionalIO } from '../io/positional-io.js';

export class OverlayIO implements PositionalIO {
  readonly readOnly = false;
  /** Non-overlapping patches, by start offset. */
  private patches = new Map<number, Uint8Array>();
  private length: number;

  constructor(
    private readonly base: PositionalIO,
    baseLength: number,
    readonly name = base.name,
  ) {
    this.length = baseLength;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(offset + length, this.length);
    if (end <= offset) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const got = await this.base.read(offset, end - offset);
    out.set(got.subarray(0, Math.min(got.length, out.length)));
    for (const [p, data] of this.patches) {
      const a = Math.max(p, offset);
      const b = Math.min(p + data.length, end);
      if (a < b) out.set(data.subarray(a - p, b - p), a - offset);
    }
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    // Split existing patches that overlap, then add this one (kept simple: few patches).
    for (const [p, d] of [...this.patches]) {
      const pe = p + d.length;
      if (pe <= offset || p >= offset + data.length) continue;
      this.patches.delete(p);
      if (p < offset) this.patches.set(p, d.subarray(0, offset - p));
      if (pe > offset + data.length) this.patches.set(offset + data.length, d.subarray(offset + data.length - p));
    }
    this.patches.set(offset, data.slice());
    this.length = Math.max(this.length, offset + data.length);
  }

  async flush(): Promise<void> {}
  async size(): Promise<number> {
    return this.length;
  }
  async truncate(size: number): Promise<void> {
    this.length = size;
  }
  async close(): Promise<void> {}
}
