// `strip --with-backing`: strip an image and every layer of its backing chain, each copy written
// where the stripped overlay will look for it (same relative name next to OUT), so `qemu-img check`
// opens the whole stripped chain as it opened the original one. A raw backing file is all guest
// data: it becomes an empty (sparse, all-zero) file of the same length.
import { open, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { createOutputFile } from '../io/output-file.js';
import { MAX_BACKING_CHAIN_DEPTH, QCOW2_MAGIC } from '../format/constants.js';
import { resolveRelativeTo } from '../image/paths.js';
import { stripFile, type StripOptions, type StripResult } from './strip.js';

export interface StrippedLayer {
  source: string;
  out: string;
  /** Absent for a raw layer (written as zeros). */
  result?: StripResult;
}

export interface ChainStrip {
  layers: StrippedLayer[];
  /** Why the chain was not followed to its end, when it was not. */
  notes: string[];
}

export async function stripChain(
  srcPath: string,
  outPath: string,
  opts: StripOptions & { force?: boolean } = {},
): Promise<ChainStrip> {
  const layers: StrippedLayer[] = [];
  const notes: string[] = [];
  let src = srcPath;
  let out = outPath;
  let format: string | undefined = 'qcow2';
  for (let depth = 0; depth < MAX_BACKING_CHAIN_DEPTH; depth++) {
    if (format !== 'qcow2' && format !== undefined) {
      await zeroCopy(src, out, opts.force === true);
      layers.push({ source: src, out });
      return { layers, notes };
    }
    if (format === undefined && !(await hasQcow2Magic(src))) {
      await zeroCopy(src, out, opts.force === true); // probed as raw, as QEMU would
      layers.push({ source: src, out });
      return { layers, notes };
    }
    const result = await stripFile(src, out, opts);
    layers.push({ source: src, out, result });
    const backing = result.backingFile;
    if (backing === undefined) return { layers, notes };
    if (isAbsolute(backing)) {
      notes.push(
        `${src} names its backing file by an absolute path (${backing}); that layer was not copied: the copy would have to be placed at that very path`,
      );
      return { layers, notes };
    }
    src = resolveRelativeTo(src, backing);
    out = resolveRelativeTo(out, backing);
    format = result.backingFormat;
  }
  notes.push(`the backing chain is deeper than ${MAX_BACKING_CHAIN_DEPTH} layers; the rest was not copied`);
  return { layers, notes };
}

async function hasQcow2Magic(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = new Uint8Array(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && new DataView(b.buffer).getUint32(0) === QCOW2_MAGIC;
  } finally {
    await fh.close();
  }
}

/** A sparse file of `src`'s length holding only zeros. */
async function zeroCopy(src: string, out: string, force: boolean): Promise<void> {
  const size = (await stat(src)).size;
  const o = await createOutputFile(out, { replace: force });
  try {
    await o.io.truncate(size);
  } catch (e) {
    await o.discard();
    throw e;
  }
  await o.commit();
}
