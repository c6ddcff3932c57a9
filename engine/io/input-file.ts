/**
 * The one way to open an input: open it, then check what the descriptor really is: a regular file
 * (never a FIFO, device or folder, which could block or be endless) and, given a `root`, one whose
 * real path lies under it. Opened non-blocking, so a FIFO nobody writes to cannot hold a thread of
 * the pool; the checks are on the open descriptor, so a folder swapped for a symbolic link between
 * the look-up and the open is caught.
 */
import { closeSync, constants, fstatSync, openSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { ConfinementError, isInside, realPathOfFd, realRoot } from './confine.js';
import { FileIO } from './file-io.js';

/** Not a regular file (a FIFO, a device, a socket): refused before a byte is read. */
export class NotRegularFileError extends Error {
  code = 'EFTYPE';
  constructor(name: string, what?: string) {
    super(what ? `${name} is not a regular file: it is ${what}` : `${name} is not a regular file`);
  }
}

/** A directory keeps the system's own code, so every caller words it "Is a directory". */
function refuseIrregular(st: Stats, name: string): void {
  if (st.isDirectory()) throw Object.assign(new NotRegularFileError(name, 'a directory'), { code: 'EISDIR' });
  if (!st.isFile()) throw new NotRegularFileError(name);
}

async function refuseOutside(fd: number, root: string | undefined, name: string): Promise<void> {
  if (root === undefined) return;
  const real = await realPathOfFd(fd);
  if (real === undefined || !isInside(real, await realRoot(root))) throw new ConfinementError(name);
}

/**
 * Open `path` read-only (or read/write) as a FileIO, refusing a non-regular file or one outside `root`.
 * `syncReads` (read-only): the FileIO reads with synchronous calls, for a caller that yields on its own.
 */
export async function openInputFile(
  path: string,
  opts: { root?: string | undefined; write?: boolean; name?: string; syncReads?: boolean } = {},
): Promise<FileIO> {
  const flags = (opts.write ? constants.O_RDWR : constants.O_RDONLY) | (constants.O_NONBLOCK ?? 0);
  const name = opts.name ?? basename(path);
  if (opts.syncReads && !opts.write) {
    const fd = openSync(path, flags);
    try {
      refuseIrregular(fstatSync(fd), name);
      await refuseOutside(fd, opts.root, name);
      return FileIO.fromSyncFd(opts.name ?? path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }
  const fh = await open(path, flags);
  try {
    refuseIrregular(await fh.stat(), name);
    await refuseOutside(fh.fd, opts.root, name);
    return FileIO.fromHandle(opts.name ?? path, fh, { write: !!opts.write });
  } catch (e) {
    await fh.close();
    throw e;
  }
}
