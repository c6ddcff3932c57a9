import type { PositionalIO } from './positional-io.js';

/**
 * One request the writer issued, in issue order. Writes keep a private copy of their bytes so the
 * log can be replayed onto a copy of the base image to build any crash state (engine/lab/crash-states.ts).
 */
export type WriteLogEntry =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'flush' }
  | { kind: 'truncate'; size: number }
  /** A discard (punch hole) of `length` bytes: reads as zeros if it reached the disk, else as before. */
  | { kind: 'discard'; offset: number; length: number };

/** A named point the writer announced (blkdebug-style event), at log position `at`. */
export interface LoggedEvent {
  /** Number of log entries issued before the event. */
  at: number;
  name: string;
}

/**
 * A PositionalIO wrapper that passes every request to `inner` and records every write (offset,
 * bytes), truncate and flush in order, plus the writer's named events. Reads are not recorded.
 *
 * The crash model built on this log: everything issued before the last *completed* flush is
 * durable; anything issued after it may or may not have reached the disk, in any combination
 * (a volatile write cache reorders), and one of those writes may be torn at 512-byte sectors.
 */
export class RecordingIO implements PositionalIO {
  readonly log: WriteLogEntry[] = [];
  readonly events: LoggedEvent[] = [];
  /** Set false to pass requests through without recording (e.g. while preparing a base image). */
  recording = true;

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

  async write(offset: number, data: Uint8Array): Promise<void> {
    // Record before issuing: a request that was issued may have reached the disk even if it failed.
    if (this.recording) this.log.push({ kind: 'write', offset, data: data.slice() });
    await this.inner.write(offset, data);
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    // A flush counts only once it completed: a failed flush made nothing durable.
    if (this.recording) this.log.push({ kind: 'flush' });
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async truncate(size: number): Promise<void> {
    if (this.recording) this.log.push({ kind: 'truncate', size });
    await this.inner.truncate(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  event(name: string): void {
    if (this.recording) this.events.push({ at: this.log.length, name });
    this.inner.event?.(name);
  }

  /** Number of flushes recorded. */
  get flushCount(): number {
    let n = 0;
    for (const e of this.log) if (e.kind === 'flush') n++;
    return n;
  }

  /** Number of writes recorded. */
  get writeCount(): number {
    let n = 0;
    for (const e of this.log) if (e.kind === 'write') n++;
    return n;
  }
}
