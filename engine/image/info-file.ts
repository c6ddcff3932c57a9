// `info` on files: open read-only with the chain opener (format probed as QEMU does), and with a
// backing chain walk it layer by layer as qemu-img's collect_image_info_list does, so that a
// refusal names the layer it concerns.
import { realpath } from 'node:fs/promises';
import * as C from '../format/constants.js';
import { Qcow2FormatError } from '../base/errors.js';
import { openChain, type ImageChain } from './backing-chain.js';
import { localPath } from './paths.js';
import { qcow2ImageInfo, rawImageInfo, type ImageInfo, type InfoOptions } from './info.js';

export interface CollectInfoOptions {
  /** Follow backing files and report every layer. */
  backingChain?: boolean;
  /** Force the format of the first image (QEMU's -f); otherwise probed. */
  format?: string;
}

/** A layer cannot be opened; the message is QEMU's "Could not open '<file>': <reason>". */
export class InfoOpenError extends Error {
  constructor(
    readonly file: string,
    reason: string,
    override readonly cause?: unknown,
  ) {
    super(`Could not open '${file}': ${reason}`);
    this.name = 'InfoOpenError';
  }
}

/** Info for `filename` and, with backingChain, for each layer below it (top first). */
export async function collectImageInfo(filename: string, opts: CollectInfoOptions = {}): Promise<ImageInfo[]> {
  const out: ImageInfo[] = [];
  const seenNames = new Set<string>();
  const seenPaths = new Set<string>();
  let name: string | undefined = filename;
  let format = opts.format;
  while (name !== undefined) {
    // QEMU's wording for a name seen before; the real path also catches other spellings of it.
    const real = await realpath(localPath(name) ?? name).catch(() => name!);
    if (seenNames.has(name) || seenPaths.has(real)) throw new Error(`Backing file '${name}' creates an infinite loop.`);
    if (out.length >= C.MAX_BACKING_CHAIN_DEPTH)
      throw new Qcow2FormatError(
        `Backing chain is deeper than ${C.MAX_BACKING_CHAIN_DEPTH} images`,
        'backing chain depth',
        out.length + 1,
      );
    seenNames.add(name);
    seenPaths.add(real);
    const info = await infoOfFile(name, format);
    out.push(info);
    if (!opts.backingChain) break;
    name = info.fullBackingFilename;
    format = info.backingFilenameFormat;
  }
  return out;
}

/**
 * Info of one file, opened read-only through the chain opener (its probing, path handling and
 * wording) without its backing file or data file; refusals of the image come back as InfoOpenError.
 */
export async function infoOfFile(filename: string, format?: string): Promise<ImageInfo> {
  if (format !== undefined && format !== 'qcow2' && format !== 'raw')
    throw new InfoOpenError(filename, `Unsupported format '${format}' (qcow2 and raw only)`);
  let chain: ImageChain;
  try {
    chain = await openChain(filename, { noBacking: true, noDataFile: true, ...(format ? { format } : {}) });
  } catch (err) {
    if (err instanceof Qcow2FormatError) throw new InfoOpenError(filename, err.message, err);
    throw err;
  }
  try {
    const top = chain.top;
    const opts: InfoOptions = { filename };
    if (top.allocatedBytes !== undefined) opts.actualSize = top.allocatedBytes;
    if (!top.image) return await rawImageInfo(top.io, opts);
    return await qcow2ImageInfo(top.image, opts);
  } catch (err) {
    if (err instanceof Qcow2FormatError) throw new InfoOpenError(filename, err.message, err);
    throw err;
  } finally {
    await chain.close();
  }
}
