// `info` on files: open read-only, probe the format as QEMU does (qcow2 magic, else raw), and with
// a backing chain walk it layer by layer as qemu-img's collect_image_info_list does.
import { realpath, stat } from 'node:fs/promises';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { FileIO } from '../io/file-io.js';
import { Qcow2FormatError } from '../errors.js';
import { Qcow2Image } from './qcow2-image.js';
import { qcow2ImageInfo, rawImageInfo, type ImageInfo } from './info.js';

export interface CollectInfoOptions {
  /** Follow backing files and report every layer. */
  backingChain?: boolean;
  /** Force the format of the first image (QEMU's -f); otherwise probed. */
  format?: string;
}

/** A layer cannot be opened; the message is QEMU's "Could not open '<file>': <reason>". */
export class InfoOpenError extends Error {
  constructor(readonly file: string, reason: string, override readonly cause?: unknown) {
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
    if (seenNames.has(name)) throw new Error(`Backing file '${name}' creates an infinite loop.`);
    const real = await realpath(name).catch(() => name!);
    if (seenPaths.has(real)) throw new Error(`Backing file '${name}' creates an infinite loop.`);
    if (out.length > C.MAX_BACKING_CHAIN_DEPTH)
      throw new Qcow2FormatError(`Backing chain is deeper than ${C.MAX_BACKING_CHAIN_DEPTH} images`, 'backing chain depth', out.length);
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

/** Info of one file, opened read-only; refusals come back as InfoOpenError. */
export async function infoOfFile(filename: string, format?: string): Promise<ImageInfo> {
  let io: FileIO;
  try {
    io = await FileIO.open(filename);
  } catch (err) {
    throw new InfoOpenError(filename, systemReason(err), err);
  }
  try {
    const actualSize = (await stat(filename)).blocks * 512;
    const fmt = format ?? (await probeFormat(io));
    if (fmt === 'raw') return await rawImageInfo(io, { filename, actualSize });
    if (fmt !== 'qcow2') throw new InfoOpenError(filename, `Unsupported format '${fmt}' (qcow2 and raw only)`);
    const img = await Qcow2Image.open(io);
    return await qcow2ImageInfo(img, { filename, actualSize });
  } catch (err) {
    if (err instanceof Qcow2FormatError) throw new InfoOpenError(filename, err.message, err);
    if (typeof (err as { code?: unknown }).code === 'string') throw new InfoOpenError(filename, systemReason(err), err);
    throw err;
  } finally {
    await io.close();
  }
}

/** QEMU's probe among the formats we read: the qcow2 magic with version >= 2, else raw. */
async function probeFormat(io: FileIO): Promise<'qcow2' | 'raw'> {
  const head = await io.read(0, 8);
  return head.length >= 8 && u32(head, 0) === C.QCOW2_MAGIC && u32(head, 4) >= 2 ? 'qcow2' : 'raw';
}

/** strerror-like text for a failed open (QEMU prints the C library's wording). */
function systemReason(err: unknown): string {
  const code = (err as { code?: string }).code;
  const known: Record<string, string> = {
    ENOENT: 'No such file or directory',
    EACCES: 'Permission denied',
    EISDIR: 'Is a directory',
    ELOOP: 'Too many levels of symbolic links',
    ENOTDIR: 'Not a directory',
  };
  return (code && known[code]) ?? (err instanceof Error ? err.message : String(err));
}
