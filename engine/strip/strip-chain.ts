// `strip --with-backing`: strip an image and every layer of its backing chain, each copy written
// where the stripped overlay will look for it (same relative name next to OUT), so `qemu-img check`
// opens the whole stripped chain as it opened the original one. A raw backing file is all guest
// data: it becomes an empty (sparse, all-zero) file of the same length.
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { createOutputFile } from '../io/output-file.js';
import { MAX_BACKING_CHAIN_DEPTH, QCOW2_MAGIC } from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { admitLayer, ChainRefusal, openRegularFile, type MayRead } from '../image/backing-chain.js';
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
  opts: StripOptions & { force?: boolean; mayRead?: MayRead } = {},
): Promise<ChainStrip> {
  const layers: StrippedLayer[] = [];
  const notes: string[] = [];
  const seen = new Set<string>();
  let src = srcPath;
  let out = outPath;
  let format: string | undefined = 'qcow2';
  for (let depth = 0; depth < MAX_BACKING_CHAIN_DEPTH; depth++) {
    // The image chain's rules: no protocol, only where allowed, only regular files, no loops.
    try {
      await admitLayer(src, depth, { mayRead: opts.mayRead });
    } catch (e) {
      if (!(e instanceof ChainRefusal)) throw e;
      notes.push(`${e.message}; that layer was not copied`);
      return { layers, notes };
    }
    const id = await identityOf(src);
    if (seen.has(id)) {
      notes.push(`the backing chain loops back to ${src}; it was copied once`);
      return { layers, notes };
    }
    seen.add(id);
    let magic: boolean;
    try {
      magic = await hasQcow2Magic(src);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EFTYPE' || depth === 0) throw e;
      notes.push(`${src} is not a regular file; that layer was not copied`);
      return { layers, notes };
    }
    if (format !== 'qcow2' && format !== undefined) {
      await zeroCopy(src, out, opts.force === true);
      layers.push({ source: src, out });
      return { layers, notes };
    }
    if (format === undefined && !magic) {
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

/** The file's identity (device and inode), so two names of one file are one layer. */
async function identityOf(path: string): Promise<string> {
  const s = await stat(path).catch(() => undefined);
  return s ? `${s.dev}:${s.ino}` : path;
}

async function hasQcow2Magic(path: string): Promise<boolean> {
  const io = await openRegularFile(path);
  try {
    const b = await io.read(0, 4);
    return b.length === 4 && u32(b, 0) === QCOW2_MAGIC;
  } finally {
    await io.close();
  }
}

/** A sparse file of `src`'s length holding only zeros. */
async function zeroCopy(src: string, out: string, force: boolean): Promise<void> {
  const io = await openRegularFile(src); // never the length of a device or a FIFO
  const size = await io.size().finally(() => io.close());
  const o = await createOutputFile(out, { replace: force });
  try {
    await o.io.truncate(size);
  } catch (e) {
    await o.discard();
    throw e;
  }
  await o.commit();
}
