// Where an output goes (a SaveRef): next to the source under a name the engine chooses, never
// overwriting; inline bytes for a browser download; a native dialog only where the host has one.
import { lstat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SaveRef } from '../contract/contract.js';
import { ContractError } from '../contract/errors.js';

/** `disk.qcow2` + `.report.html` → `disk.report.html` (then `disk-2.report.html`, ... if taken). */
export async function siblingPath(source: string, suffix: string): Promise<string> {
  const dir = dirname(source);
  const stem = basename(source).replace(/\.(qcow2|qcow|img)$/i, '');
  for (let n = 1; n < 1000; n++) {
    const p = join(dir, `${stem}${n === 1 ? '' : `-${n}`}${suffix}`);
    // lstat: a name held by a link, even a dangling one, is taken.
    if (!(await lstat(p).catch(() => undefined))) return p;
  }
  throw new ContractError('io', `no free name for ${stem}${suffix} next to the image`);
}

/** The file to write for `save` (sibling), or undefined for inline; refuses dialogs here. */
export async function outputPath(save: SaveRef, source: string, suffix: string): Promise<string | undefined> {
  if (save.kind === 'inline') return undefined;
  if (save.kind === 'dialog')
    throw new ContractError(
      'not-available',
      'a save dialog is not available in this window: save next to the image instead',
      { field: 'args.save.kind', value: 'dialog' },
    );
  return siblingPath(source, save.suffix ?? suffix);
}
