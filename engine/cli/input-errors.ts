// What the CLI says when an input file cannot be used: `qcow2-doctor: Could not open 'X': <reason>`
// with the reason in words (as QEMU words them), never a raw "EISDIR: illegal operation ...". And,
// for a file whose qcow2 header is destroyed, the command that can still recover its data.
import { Qcow2FormatError } from '../base/errors.js';
import { guessContent } from '../triage/content-kind.js';

const REASONS: Record<string, string> = {
  EISDIR: 'Is a directory',
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  ENXIO: 'No such device or address',
  EBUSY: 'Device or resource busy',
  EFTYPE: 'Not a regular file',
};

/** The reason in words for a file-system error code, or undefined for other errors. */
export function reasonOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code ? REASONS[code] : undefined;
}

/** The first argument after the command name that is not an option: the input file, by convention. */
export function inputOf(argv: readonly string[]): string | undefined {
  return argv.slice(3).find((a) => !a.startsWith('-'));
}

/**
 * The lines to print for an error that ended a command (without the "qcow2-doctor: " prefix): a file
 * error in words, a format error naming the input, and for a destroyed header the salvage command.
 */
export async function describeCliError(err: unknown, argv: readonly string[]): Promise<string[]> {
  const reason = reasonOf(err);
  const input = inputOf(argv);
  if (reason !== undefined) {
    const path = (err as NodeJS.ErrnoException).path ?? input;
    return [path !== undefined ? `Could not open '${path}': ${reason}` : reason];
  }
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Qcow2FormatError && input !== undefined) {
    const lines = [message.startsWith('Could not open ') ? message : `Could not open '${input}': ${message}`];
    const hint = /not in qcow2 format/.test(message) ? await salvageHint(input) : undefined;
    if (hint) lines.push(hint);
    return lines;
  }
  return [message];
}

/** For a file without a qcow2 header whose tables are still there: how to recover its data. */
export async function salvageHint(path: string): Promise<string | undefined> {
  const g = await guessContent(path).catch(() => undefined);
  if (g?.kind !== 'damaged-header') return undefined;
  const q = /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
  return `the qcow2 header of this file looks destroyed, but its tables are there (${g.why.replace(/^a qcow2 image with a damaged header \((.*)\)$/, '$1')}): recover its data with: qcow2-doctor salvage ${q} recovered.raw`;
}
