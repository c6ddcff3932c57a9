// The raw output of a salvaged disk: sparse (zero clusters are never written), contiguous clusters
// gathered into large writes, each write running while the next data is read. Clusters are copied
// into two reused staging buffers (the reader's buffer is lent only for the call): one fills while
// the other is being written.
import type { PositionalIO } from '../io/positional-io.js';
import { uninitialized } from './bulk-read.js';
import { WriteBehind } from './write-behind.js';

const MAX_WRITE = 8 * 1024 * 1024;

export class RawSparseWriter {
  private readonly out: WriteBehind;
  private readonly staging: Uint8Array[] = [];
  private turn = 0;
  private buf: Uint8Array | undefined;
  private runStart = -1;
  private clusters = 0;
  private readonly maxClusters: number;

  constructor(
    private readonly io: PositionalIO,
    private readonly cs: number,
    private readonly size: number,
  ) {
    this.out = new WriteBehind(io);
    this.maxClusters = Math.max(1, MAX_WRITE / cs);
  }

  /** One guest cluster, in increasing order; null = zeros (left a hole). */
  async put(g: number, d: Uint8Array | null): Promise<void> {
    if (!d) {
      await this.flushRun();
      return;
    }
    if (this.clusters && (this.runStart + this.clusters !== g || this.clusters >= this.maxClusters))
      await this.flushRun();
    if (!this.clusters) {
      this.runStart = g;
      const k = this.turn++ % 2;
      this.staging[k] ??= uninitialized(this.maxClusters * this.cs);
      this.buf = this.staging[k];
    }
    const at = this.clusters * this.cs;
    this.buf!.set(d.subarray(0, this.cs), at);
    // A short piece (the end of a truncated file) reads as zeros after it.
    if (d.length < this.cs) this.buf!.fill(0, at + d.length, at + this.cs);
    this.clusters++;
  }

  /** Write what is left, set the size and make it durable. */
  async finish(): Promise<void> {
    await this.flushRun();
    await this.out.drain();
    await this.io.truncate(this.size);
    await this.io.flush();
  }

  /** Wait for writes in flight (before the output is closed or removed on an error). */
  async abandon(): Promise<void> {
    await this.out.drain().catch(() => undefined);
  }

  private async flushRun(): Promise<void> {
    if (!this.clusters) return;
    const off = this.runStart * this.cs;
    const len = Math.min(this.clusters * this.cs, this.size - off);
    this.clusters = 0;
    // Returns once the previous write is done: the staging buffer it used is free for the next run.
    await this.out.write(off, this.buf!.subarray(0, len));
  }
}
