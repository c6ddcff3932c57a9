// Which files a triage covers: every file named on the command line, and inside folders (walked
// recursively) every file that carries the qcow2 magic or is named like a qcow2 image.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { QCOW2_MAGIC } from '../format/constants.js';

const QCOW2_NAME = /\.(qcow2|qcow2c|qcow|qcow3)$/i;
/** Folders deeper than this are not entered (a guard against pathological trees). */
const MAX_DEPTH = 32;

export interface FoundImages {
  /** Files to triage, in the order given (folders' contents sorted by name). */
  files: string[];
  /** Files inside folders that were not taken (neither magic nor name). */
  skipped: number;
}

export async function findImages(paths: readonly string[]): Promise<FoundImages> {
  const files: string[] = [];
  const taken = new Set<string>();
  let skipped = 0;
  const take = (p: string): void => {
    if (!taken.has(p)) {
      taken.add(p);
      files.push(p);
    }
  };
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) return;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      // Symbolic links inside folders are not followed: no loops, no surprises outside the folder.
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.isFile()) {
        if (QCOW2_NAME.test(e.name) || (await hasQcow2Magic(p))) take(p);
        else skipped++;
      }
    }
  };
  for (const p of paths) {
    const st = await stat(p).catch(() => undefined);
    if (st?.isDirectory()) await walk(p, 0);
    else take(p); // named explicitly: always reported, even when missing or not qcow2
  }
  return { files, skipped };
}

async function hasQcow2Magic(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const buf = new Uint8Array(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && ((buf[0]! << 24) >>> 0) + ((buf[1]! << 16) | (buf[2]! << 8) | buf[3]!) === QCOW2_MAGIC;
  } finally {
    await fh.close();
  }
}
