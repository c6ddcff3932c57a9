// What `check -r` says about a file it cannot repair at all: one without a qcow2 header (QEMU probes
// it as raw and exits 63 "This image format does not support checks") or one whose header cannot be
// opened. A repair needs the header to find every table, so it writes nothing and says so as a
// refusal, with the way forward: salvage finds the tables without the header.
import { QCOW2_MAGIC } from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { openInputFile } from '../../io/input-file.js';
import { salvageHint } from '../input-errors.js';

/** QEMU's exit code for a file its probe does not take for a qcow2 image. */
export const NOT_QCOW2_EXIT = 63;

/** The first 8 bytes of the file, or undefined when it cannot be opened (the repair reports that). */
async function headOf(path: string): Promise<Uint8Array | undefined> {
  let io: Awaited<ReturnType<typeof openInputFile>>;
  try {
    io = await openInputFile(path);
  } catch {
    return undefined;
  }
  try {
    return await io.read(0, 8);
  } finally {
    await io.close();
  }
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** The refusal line's way forward: salvage, said with certainty only when the tables are seen. */
async function wayForward(path: string): Promise<string> {
  const hint = await salvageHint(path);
  if (hint) return hint;
  const q = /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
  return `no qcow2 tables were recognised in it either; if it was a qcow2 image, try: qcow2-doctor salvage ${q} recovered.raw`;
}

/**
 * The refusal for a file whose first bytes are no qcow2 header (magic "QFI\xfb", version 2 or 3), or
 * undefined when they are (or the file cannot be read: the repair says why). `say` prints one line.
 */
export async function refuseWithoutHeader(path: string, say: (s: string) => void): Promise<number | undefined> {
  const head = await headOf(path);
  if (head === undefined) return undefined;
  const magic = head.length >= 4 ? u32(head, 0) : undefined;
  const version = head.length >= 8 ? u32(head, 4) : undefined;
  if (magic === QCOW2_MAGIC && version !== undefined && version >= 2) return undefined;
  const found =
    magic === undefined
      ? `the file is ${head.length} bytes long`
      : magic !== QCOW2_MAGIC
        ? `magic ${hex(magic)}, expected ${hex(QCOW2_MAGIC)}`
        : `version ${version ?? 'missing'}, expected 2 or 3`;
  say('This image format does not support checks');
  say(`not repaired: the header is not a qcow2 header (${found}); nothing was written — ${await wayForward(path)}`);
  return NOT_QCOW2_EXIT;
}

/** The refusal for a qcow2 header the image cannot be opened with (printed after QEMU's "Could not open"). */
export async function refuseUnopenable(path: string, reason: string, say: (s: string) => void): Promise<void> {
  say(`not repaired: the qcow2 header cannot be used (${reason}); nothing was written — ${await wayForward(path)}`);
}

/** The refusal for a repair that stopped before its first write (the check could not complete, or the plan failed). */
export function refuseFailed(path: string, mode: 'leaks' | 'all', reason: string, say: (s: string) => void): void {
  const q = /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
  const forward =
    mode === 'leaks' && /rebuild refcount/.test(reason)
      ? `\`qcow2-doctor check -r all ${q}\` rebuilds the refcount structures`
      : `copy the data out with: qcow2-doctor salvage ${q} recovered.raw`;
  say(`not repaired: ${reason}; nothing was written — ${forward}`);
}
