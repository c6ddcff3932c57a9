// Many fixed-size tables read at once, for callers outside a traversal (the repair's refcount
// blocks): the traversal's batch reader, sorted and merged, zero-padded past the end of the file.
import type { PositionalIO } from '../../io/positional-io.js';
import { type BufferPool, readRanges } from './batch-reads.js';

/**
 * Tables of `size` bytes at `offsets` (aligned, starting inside the file), keyed by offset. With a
 * `pool`, they are read into its arena (valid until the pool is released: no fresh memory per call).
 */
export function readTables(
  io: PositionalIO,
  fileSize: number,
  offsets: readonly number[],
  size: number,
  pool?: BufferPool,
): Promise<Map<number, Uint8Array>> {
  return readRanges(io, fileSize, [...offsets], size, new Uint8Array(size), pool);
}
