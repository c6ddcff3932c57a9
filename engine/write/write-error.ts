/**
 * A write-path operation failed (an I/O error, or a limit of the format). The message names the
 * operation and the reason in one line; `cause` keeps the underlying error. When raised by an
 * I/O error, the writer has already backed out its in-memory state (reloaded from disk).
 */
export class WriteError extends Error {
  /** Refused before anything changed (bad arguments): nothing to back out. */
  readonly usage: boolean;
  constructor(
    /** What was being done, e.g. 'guest write at 0x10000'. */
    readonly operation: string,
    readonly reason: string,
    options?: { cause?: unknown; usage?: boolean },
  ) {
    super(`${operation} failed: ${reason}`, options);
    this.usage = options?.usage ?? false;
    this.name = 'WriteError';
  }
}
