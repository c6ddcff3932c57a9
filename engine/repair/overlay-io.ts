/**
 * A read-only view of an image with planned writes laid over it, so the planner can run the checker
 * on "the image as it will be" without writing anything. Writes to the overlay stay in memory.
 */
import type { PositionalIO } from '../io/positional-io.js';

export class OverlayIO implements PositionalIO {
  readonly readOnly = false;
  /** Non-overlapping patches sorted by start offset (so also by end): a repair of a hostile image
   * can plan tens of thousands of small writes, and each read or write finds its own by binary search. */
  private readonly starts: number[] = [];
  private readonly datas: Uint8Array[] = [];
  private length: number;

  constructor(
    private readonly base: PositionalIO,
    baseLength: number,
    readonly name = base.name,
  ) {
    this.length = baseLength;
  }

  /** The first patch that ends after `offset`. */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! + this.datas[mid]!.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(offset + length, this.length);
    if (end <= offset) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const got = await this.base.read(offset, end - offset);
    out.set(got.subarray(0, Math.min(got.length, out.length)));
    for (let i = this.firstEndingAfter(offset); i < this.starts.length && this.starts[i]! < end; i++) {
      const p = this.starts[i]!;
      const data = this.datas[i]!;
      const a = Math.max(p, offset);
      const b = Math.min(p + data.length, end);
      if (a < b) out.set(data.subarray(a - p, b - p), a - offset);
    }
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    const end = offset + data.length;
    const i = this.firstEndingAfter(offset);
    let j = i;
    while (j < this.starts.length && this.starts[j]! < end) j++;
    // The overlapped patches are replaced by what sticks out of them on either side, and the new one.
    const starts: number[] = [];
    const datas: Uint8Array[] = [];
    if (i < j && this.starts[i]! < offset) {
      starts.push(this.starts[i]!);
      datas.push(this.datas[i]!.subarray(0, offset - this.starts[i]!));
    }
    starts.push(offset);
    datas.push(data.slice());
    if (i < j) {
      const p = this.starts[j - 1]!;
      const d = this.datas[j - 1]!;
      if (p + d.length > end) {
        starts.push(end);
        datas.push(d.subarray(end - p));
      }
    }
    this.starts.splice(i, j - i, ...starts);
    this.datas.splice(i, j - i, ...datas);
    this.length = Math.max(this.length, end);
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
