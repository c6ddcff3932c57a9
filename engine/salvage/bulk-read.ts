// Reads for the salvage's two passes over the image (the scan, then the export of mapped data),
// which move every byte of the file: into buffers the caller reuses, since a fresh buffer per read
// costs more in page faults than the read itself. With a plain file the read goes straight to the
// descriptor; any other PositionalIO is read through its own read() and copied.
import { read as fsRead } from 'node:fs';
import { FileIO } from '../io/file-io.js';
import type { PositionalIO } from '../io/positional-io.js';

function readFd(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Fill buf[0, length) from `position`; returns the bytes read (fewer only at end of file). */
export async function readInto(io: PositionalIO, position: number, buf: Uint8Array, length: number): Promise<number> {
  if (io instanceof FileIO) {
    let done = 0;
    while (done < length) {
      const n = await readFd(io.fd, buf, done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }
  const got = await io.read(position, length);
  buf.set(got);
  return got.length;
}

/** A buffer of `length` bytes whose content is undefined until written (no zero-filling). */
export function uninitialized(length: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(length);
  // A plain Uint8Array: Buffer's slice() would share memory where callers expect a copy.
  return new Uint8Array(b.buffer, b.byteOffset, length);
}
