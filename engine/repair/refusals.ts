/**
 * Reasons not to write an image at all, checked before anything is touched: a running QEMU (or any
 * other process) holding a lock on it, a file we may not write, a journal we cannot create.
 * Each returns a one-line reason or undefined.
 */
import { access, constants, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Linux dev_t → major/minor as /proc/locks prints them. */
function devParts(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

export interface LockHolder {
  kind: string;
  access: string;
  pid: number;
}

/**
 * Locks on the file listed in /proc/locks (QEMU takes OFD byte-range locks on every image it has
 * open; POSIX and flock locks are included too). Empty where /proc/locks does not exist.
 */
export async function locksOn(path: string, procLocks = '/proc/locks'): Promise<LockHolder[]> {
  let text: string;
  try {
    text = await readFile(procLocks, 'utf8');
  } catch {
    return [];
  }
  const st = await stat(path);
  const { major, minor } = devParts(st.dev);
  const out: LockHolder[] = [];
  for (const line of text.split('\n')) {
    // "1: OFDLCK  ADVISORY  READ  -1 08:01:1234 100 100" (blocked waiters start with "-> ").
    const f = line
      .trim()
      .replace(/^\d+:\s*(->\s*)?/, '')
      .split(/\s+/);
    if (f.length < 5) continue;
    const id = f[4]!.split(':');
    if (id.length !== 3) continue;
    if (parseInt(id[0]!, 16) === major && parseInt(id[1]!, 16) === minor && Number(id[2]) === st.ino)
      out.push({ kind: f[0]!, access: f[2]!, pid: Number(f[3]) });
  }
  return out;
}

/** One line when another process holds the image, else undefined. */
export async function inUseReason(path: string): Promise<string | undefined> {
  const locks = await locksOn(path);
  if (locks.length === 0) return undefined;
  const pids = [...new Set(locks.map((l) => l.pid).filter((p) => p > 0))];
  const who = pids.length ? `process ${pids.join(', ')}` : 'another process (OFD locks, as QEMU takes)';
  return `refusing to write ${path}: it is in use by ${who} — ${locks.length} lock(s) in /proc/locks; stop the VM or qemu process first`;
}

/** One line when the image cannot be written, else undefined. */
export async function notWritableReason(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return `refusing to write ${path}: not a regular file`;
    // No write permission bit at all: the owner marked it read-only (even root honours that here).
    if ((st.mode & 0o222) === 0)
      return `refusing to write ${path}: the file is read-only (mode ${(st.mode & 0o777).toString(8)})`;
    await access(path, constants.W_OK);
    // A read-only mount or an immutable file only shows when opening for writing (nothing is written).
    const fh = await open(path, 'r+');
    await fh.close();
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
      return `refusing to write ${path}: the file is read-only (${code})`;
    return `refusing to write ${path}: ${code ?? (e as Error).message}`;
  }
}

/** One line when the journal cannot be created at `journalPath`, else undefined (nothing is created). */
export async function journalUnwritableReason(journalPath: string): Promise<string | undefined> {
  try {
    await stat(journalPath);
    return `refusing to repair: the journal file ${journalPath} already exists`;
  } catch {
    // expected: does not exist
  }
  try {
    await access(dirname(journalPath), constants.W_OK | constants.X_OK);
    return undefined;
  } catch (e) {
    return `refusing to repair: cannot write the undo journal in ${dirname(journalPath)} (${(e as NodeJS.ErrnoException).code ?? 'error'}); choose another place with --journal FILE`;
  }
}
