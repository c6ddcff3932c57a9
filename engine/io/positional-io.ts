/**
 * The only way the engine reaches storage: positional reads and writes, a flush barrier, size and
 * truncate. Backends: a file (file-io.ts), a memory buffer (memory-io.ts), and test backends that
 * record writes or inject faults. Offsets are byte offsets (safe integers).
 */
export interface PositionalIO {
  /** Human name for messages (usually the path). */
  readonly name: string;
  readonly readOnly: boolean;
  /** Read up to `length` bytes at `offset`; returns fewer only at end of file. */
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Barrier: everything written before is durable when this resolves. */
  flush(): Promise<void>;
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional: a writer announces a named point of its update sequence (QEMU blkdebug event names,
   * e.g. 'l2_alloc_write'). Plain backends ignore it; the recording backend logs it and the fault
   * backend arms its rules on it. Wrappers pass it on to the backend they wrap.
   */
  event?(name: string): void;
}

export class ReadOnlyError extends Error {
  constructor(name: string) {
    super(`${name}: opened read-only`);
  }
}

/** Read exactly `length` bytes, padding with zeros past end of file (as qcow2 readers do). */
export async function readPadded(io: PositionalIO, offset: number, length: number): Promise<Uint8Array> {
  const got = await io.read(offset, length);
  if (got.length === length) return got;
  const out = new Uint8Array(length);
  out.set(got);
  return out;
}
