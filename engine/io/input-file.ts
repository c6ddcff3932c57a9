/**
 * The one way to open an input under a root: open it, then check what the descriptor really is:
 * a regular file (never a FIFO, device or folder, which could block or be endless) whose real
 * path lies under `root`. The check is on the open descriptor, so a folder swapped for a symbolic
 * link between the look-up and the open is caught.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { ConfinementError, isInside, realPathOfFd, realRoot } from './confine.js';
import { FileIO } from './file-io.js';

/** Not a regular file: refused before a byte is read. */
export class NotRegularFileError extends Error {
  readonly code = 'EINVAL';
  constructor(name: string) {
    super(`${name} is not a regular file`);
  }
}

/** Open `path` read-only (or read/write) as a FileIO, refusing a non-regular file or one outside `root`. */
export async function openInputFile(
  path: string,
  opts: { root?: string | undefined; write?: boolean; name?: string } = {},
): Promise<FileIO> {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
  const flags = (opts.write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK;
  const fh = await open(path, flags);
  try {
    if (!(await fh.stat()).isFile()) throw new NotRegularFileError(opts.name ?? basename(path));
    if (opts.root !== undefined) {
      const real = await realPathOfFd(fh.fd);
      if (real === undefined || !isInside(real, await realRoot(opts.root)))
        throw new ConfinementError(opts.name ?? basename(path));
    }
    return FileIO.fromHandle(opts.name ?? path, fh, { write: !!opts.write });
  } catch (e) {
    await fh.close();
    throw e;
  }
}
