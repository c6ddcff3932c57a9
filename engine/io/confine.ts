/**
 * Where a descriptor really points. On Linux `/proc/self/fd/N` names the file or folder an open
 * descriptor refers to, whatever was renamed or swapped for a symbolic link since the path was
 * looked up; it is also usable as a folder prefix, which gives the `openat` that Node lacks.
 */
import { readlink, realpath } from 'node:fs/promises';
import { sep } from 'node:path';

/** The real path of an open descriptor, or undefined where /proc is not available. */
export async function realPathOfFd(fd: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/**
 * May the file an open descriptor really refers to be read? Asks `allowed` about the descriptor's
 * real path rather than the name it was opened by, so a folder swapped for a symbolic link between
 * the check of the name and the open is caught. Without /proc, falls back to the name's answer.
 */
export async function descriptorAllowed(
  fd: number | undefined,
  allowed: (path: string) => boolean | Promise<boolean>,
): Promise<boolean> {
  if (fd === undefined) return true;
  const real = await realPathOfFd(fd);
  return real === undefined ? true : await allowed(real);
}

/** True when real path `p` is `root` or lies inside it (both already real). */
export function isInside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The real path of a root folder given by the caller (resolved once). */
export async function realRoot(root: string): Promise<string> {
  return realpath(root);
}

/** A file or folder that is not where it may be: the message names it relative to nothing secret. */
export class ConfinementError extends Error {
  readonly code = 'EACCES';
  constructor(what: string) {
    super(`${what} is outside the folder it must stay in (a symbolic link or a swapped folder)`);
  }
}
