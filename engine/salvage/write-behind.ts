// Writes that overlap with the reading that produces them: one write runs while the next data is
// read, and every so often a flush is started in the background so the page cache is written out
// while the salvage goes on, instead of all at the final flush. At most one write and one flush
// are in flight; an error of either is thrown by the next call.
import type { PositionalIO } from '../io/positional-io.js';

/** Bytes written between background flushes. */
const FLUSH_EVERY = 128 * 1024 * 1024;

export class WriteBehind {
  private writing: Promise<void> | undefined;
  private flushing: Promise<void> | undefined;
  private sinceFlush = 0;
  private error: unknown;

  constructor(private readonly io: PositionalIO) {}

  /** Start writing `data` at `offset`; `data` must not change until the next call or drain(). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.writing;
    this.rethrow();
    this.writing = this.io.write(offset, data).catch((e: unknown) => {
      this.error ??= e;
    });
    this.sinceFlush += data.length;
    if (this.sinceFlush >= FLUSH_EVERY && !this.flushing) {
      this.sinceFlush = 0;
      this.flushing = this.io
        .flush()
        .catch((e: unknown) => {
          this.error ??= e;
        })
        .finally(() => {
          this.flushing = undefined;
        });
    }
  }

  /** Wait for what is in flight (nothing runs after this); throws the first error met. */
  async drain(): Promise<void> {
    await this.writing;
    await this.flushing;
    this.writing = undefined;
    this.rethrow();
  }

  private rethrow(): void {
    if (this.error !== undefined) throw this.error;
  }
}
