// Opening an image together with everything its guest data depends on: the backing chain (any
// depth, qcow2 or raw layers) and each qcow2 layer's external data file. This is the one place that
// turns file names recorded in headers into open files, the way QEMU does, and the one set of
// rules for following them: names are hostile, so a layer is opened only when the caller's
// `mayRead` allows its path, only if it is a regular file (checked on the descriptor before any
// read), never through a protocol (nbd:, http:, ...), at most MAX_BACKING_CHAIN_DEPTH deep and
// never twice (loops).
import { realpath, stat } from 'node:fs/promises';
import { sep } from 'node:path';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { descriptorAllowed } from '../io/confine.js';
import { openInputFile } from '../io/input-file.js';
import type { PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError, UnreadableError } from '../base/errors.js';
import { Qcow2Image } from './qcow2-image.js';
import { localPath, resolveRelativeTo } from './paths.js';

export type LayerFormat = 'qcow2' | 'raw';

/** One layer of a chain: depth 0 is the image that was opened, depth 1 its backing file, … */
export interface ChainLayer {
  depth: number;
  /**
   * The file name as QEMU names it: the path given for the top layer; for a backing file the
   * recorded name combined with the overlay's directory (QEMU's path_combine, not normalised).
   */
  filename: string;
  format: LayerFormat;
  /** How the format was decided: given by the caller or the overlay's header, or probed by magic. */
  formatSource: 'given' | 'header' | 'probed';
  io: PositionalIO;
  /** The decoded image, for qcow2 layers. */
  image?: Qcow2Image;
  /** The external data file of a qcow2 layer with incompatible bit 2. */
  dataFile?: { filename: string; io: PositionalIO; allocatedBytes?: number };
  /** Guest size of this layer: the qcow2 virtual size, or a raw file's length. */
  virtualSize: number;
  /** Bytes the host file system allocates for this file (st_blocks * 512), when known. */
  allocatedBytes?: number;
}

/** Confinement: may the file at this local path be opened? (serve allows only its root.) */
export type MayRead = (path: string) => boolean | Promise<boolean>;

/** Why a chain ends before its last recorded backing file (only with `partial`). */
export interface ChainStop {
  /** Depth the layer would have had. */
  depth: number;
  /** The name as resolved against its overlay. */
  filename: string;
  /** One line, QEMU's wording where QEMU has one. */
  reason: string;
  /**
   * 'protocol' and 'not-allowed' are our refusals; 'format' a format QEMU reads and we do not;
   * 'unopenable' is what QEMU would refuse too.
   */
  kind: 'protocol' | 'not-allowed' | 'format' | 'unopenable';
}

export interface ImageChain {
  /** layers[0] is the image opened; the last one has no backing file (or backing was not opened). */
  readonly layers: ChainLayer[];
  readonly top: ChainLayer;
  /** Set when the chain was followed with `partial` and ended early. */
  readonly stoppedAt?: ChainStop;
  /** Closes every file the chain opened. */
  close(): Promise<void>;
}

export interface OpenChainOptions {
  /** Format of the top image; probed by magic when absent (as QEMU does without -f). */
  format?: LayerFormat;
  /** Open only the top image (like `qemu-img info` without --backing-chain). */
  noBacking?: boolean;
  /** Do not open external data files (metadata-only callers). */
  noDataFile?: boolean;
  /** External data file of the top image, overriding the name recorded in its header. */
  dataFile?: string;
  /** Passed to Qcow2Image.open for every qcow2 layer. */
  checkMode?: boolean;
  /** Most layers accepted (default MAX_BACKING_CHAIN_DEPTH). */
  maxDepth?: number;
  /** Opens a file read-only; default openInputFile (regular files only). Tests inject their own. */
  openFile?: (path: string) => Promise<PositionalIO>;
  /** Backing layers and data files are opened only where this allows (the top is the caller's choice). */
  mayRead?: MayRead;
  /**
   * Instead of failing, end the chain at a backing layer that cannot be followed (protocol, not
   * allowed, missing, not a regular file, not an image we read) and say why in `stoppedAt`.
   * Structural refusals (too deep, a loop) still throw.
   */
  partial?: boolean;
}

/** A MayRead allowing only files whose real path (links resolved) is `root` or under it. */
export function confinedTo(root: string): MayRead {
  const rootReal = realpath(root).catch(() => undefined);
  return async (p: string) => {
    const r = await rootReal;
    const real = await realpath(p).catch(() => undefined);
    if (r === undefined || real === undefined) return false;
    return real === r || real.startsWith(r.endsWith(sep) ? r : r + sep);
  };
}

/** Opens a layer read-only, refusing anything but a regular file before reading it. */
export const openRegularFile = (path: string): Promise<PositionalIO> => openInputFile(path);

/**
 * May the backing file QEMU would look for at `filename` (already resolved against its overlay) be
 * opened as layer `depth`? Returns its local path, or throws UnreadableError with the reason: a
 * protocol name, a path `mayRead` refuses, a chain deeper than `maxDepth`.
 */
export async function admitLayer(
  filename: string,
  depth: number,
  opts: { mayRead?: MayRead; maxDepth?: number } = {},
): Promise<string> {
  const maxDepth = opts.maxDepth ?? C.MAX_BACKING_CHAIN_DEPTH;
  if (depth >= maxDepth)
    throw new UnreadableError(
      `Backing chain too deep: '${filename}' would be layer ${depth + 1}, at most ${maxDepth} are accepted`,
    );
  const local = localPath(filename);
  if (local === undefined)
    throw new ChainRefusal(
      'protocol',
      `Could not open '${filename}': only local files are supported (protocol '${filename.slice(0, filename.indexOf(':'))}')`,
    );
  if (depth > 0 && opts.mayRead && !(await opts.mayRead(local)))
    throw new ChainRefusal(
      'not-allowed',
      `Could not open backing file: Could not open '${filename}': outside the folders this tool may read`,
    );
  return local;
}

/** An UnreadableError saying why a backing name is not followed (our refusal, not QEMU's). */
export class ChainRefusal extends UnreadableError {
  constructor(
    readonly kind: 'protocol' | 'not-allowed',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Open `path` and its whole backing chain read-only.
 *
 * - Relative backing names are resolved against the directory of the overlay's file name, exactly
 *   as QEMU combines them (so `filename` matches what qemu-img prints).
 * - The backing format comes from the overlay's backing-format extension; without one it is probed
 *   by magic (qcow2 magic ⇒ qcow2; other known image magics are refused; anything else is raw).
 * - Cycles and chains longer than `maxDepth` are refused with one line; a missing or unopenable
 *   backing file is refused with QEMU's wording.
 * - A qcow2 layer with an external data file gets it opened (name from the header extension,
 *   resolved like a backing name; if that file does not exist, relative to the working directory
 *   as QEMU 7.2 does).
 *
 * Errors: Qcow2FormatError for a malformed header, UnreadableError for everything else. On error
 * every file already opened is closed again.
 */
export async function openChain(path: string, opts: OpenChainOptions = {}): Promise<ImageChain> {
  const openFile = opts.openFile ?? openRegularFile;
  // File-system facts (identity for cycles, allocation for holes) only describe files opened from
  // the file system; an injected opener may serve other bytes under the same names.
  const onDisk = opts.openFile === undefined;
  const identityOf = (name: string) => (onDisk ? identity(name) : Promise.resolve(name));
  const allocatedOf = (name: string) => (onDisk ? allocated(name) : Promise.resolve(undefined));
  const maxDepth = opts.maxDepth ?? C.MAX_BACKING_CHAIN_DEPTH;
  const layers: ChainLayer[] = [];
  const opened: PositionalIO[] = [];
  const seen = new Map<string, number>();
  let stoppedAt: ChainStop | undefined;
  const closeAll = async () => {
    for (const io of opened.splice(0).reverse()) await io.close().catch(() => undefined);
  };
  try {
    let filename = path;
    let format: LayerFormat | undefined = opts.format;
    let formatSource: ChainLayer['formatSource'] = 'given';
    for (let depth = 0; ; depth++) {
      let io: PositionalIO;
      try {
        const local = await admitLayer(filename, depth, { mayRead: opts.mayRead, maxDepth });
        io = await openOrExplain(openFile, filename, local, depth);
        if (depth > 0) await confineOpened(io, filename, opts.mayRead);
      } catch (e) {
        const kind = e instanceof ChainRefusal ? e.kind : e instanceof OpenFailure ? 'unopenable' : undefined;
        if (!opts.partial || depth === 0 || kind === undefined) throw e;
        stoppedAt = { depth, filename, reason: (e as Error).message, kind };
        break;
      }
      opened.push(io);
      const key = await identityOf(filename);
      const prev = seen.get(key);
      if (prev !== undefined)
        throw new UnreadableError(
          `Backing file '${filename}' creates an infinite loop (it is layer ${prev} of the chain)`,
        );
      seen.set(key, depth);
      if (!format) {
        try {
          format = await probeFormat(io, filename);
        } catch (e) {
          if (!opts.partial || depth === 0) throw e;
          stoppedAt = { depth, filename, reason: (e as Error).message, kind: 'format' };
          break;
        }
        formatSource = 'probed';
      }
      const allocatedBytes = await allocatedOf(filename);
      const layer: ChainLayer = { depth, filename, format, formatSource, io, virtualSize: 0 };
      if (allocatedBytes !== undefined) layer.allocatedBytes = allocatedBytes;
      if (format === 'raw') {
        layer.virtualSize = await io.size();
        layers.push(layer);
        break;
      }
      let image: Qcow2Image;
      try {
        image = await Qcow2Image.open(io, { checkMode: opts.checkMode });
      } catch (e) {
        if (!opts.partial || depth === 0 || !(e instanceof Qcow2FormatError)) throw e;
        stoppedAt = { depth, filename, reason: `Could not open backing file: ${e.qemuReason}`, kind: 'unopenable' };
        break;
      }
      layer.image = image;
      layer.virtualSize = image.virtualSize;
      layers.push(layer);
      if (image.hasExternalData && !opts.noDataFile) {
        const df = await openDataFile(
          image,
          filename,
          depth === 0 ? opts.dataFile : undefined,
          openFile,
          allocatedOf,
          opts.mayRead,
        );
        opened.push(df.io);
        layer.dataFile = df;
      }
      const backing = image.header.backingFile;
      if (opts.noBacking || backing === undefined || backing === '') break;
      filename = resolveRelativeTo(filename, backing);
      const fmt = image.header.backingFormat;
      if (fmt !== undefined) {
        if (fmt !== 'qcow2' && fmt !== 'raw')
          throw new UnreadableError(
            `Could not open backing file '${filename}': backing format '${fmt}' is not supported (qcow2 and raw are)`,
          );
        format = fmt;
        formatSource = 'header';
      } else {
        format = undefined;
      }
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  const top = layers[0]!;
  const chain: ImageChain = { layers, top, close: closeAll };
  return stoppedAt ? { ...chain, stoppedAt } : chain;
}

/** Local paths of every file a chain reads: each layer and each external data file. */
export function chainFiles(chain: ImageChain): string[] {
  const out: string[] = [];
  for (const l of chain.layers) {
    out.push(localPath(l.filename) ?? l.filename);
    if (l.dataFile) out.push(localPath(l.dataFile.filename) ?? l.dataFile.filename);
  }
  return out;
}

/** Open a chain, run `fn`, and close the chain whatever happens. */
export async function withChain<T>(
  path: string,
  opts: OpenChainOptions,
  fn: (chain: ImageChain) => Promise<T>,
): Promise<T> {
  const chain = await openChain(path, opts);
  try {
    return await fn(chain);
  } finally {
    await chain.close();
  }
}

/** The descriptor of a file opened from the file system, if it has one. */
const fdOf = (io: PositionalIO): number | undefined => {
  const fd = (io as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : undefined;
};

/**
 * After the open: the file the descriptor really refers to must be one `mayRead` allows (the name
 * was checked before the open; a folder on the way may have been swapped for a link since).
 * Closes the file and refuses otherwise.
 */
async function confineOpened(io: PositionalIO, filename: string, mayRead: MayRead | undefined): Promise<void> {
  if (!mayRead || (await descriptorAllowed(fdOf(io), mayRead))) return;
  await io.close().catch(() => undefined);
  throw new ChainRefusal(
    'not-allowed',
    `Could not open backing file: Could not open '${filename}': outside the folders this tool may read (the file opened is elsewhere: a folder was swapped for a symbolic link)`,
  );
}

/** A layer the file system would not give us (missing, not permitted, not a regular file). */
class OpenFailure extends UnreadableError {}

async function openOrExplain(
  openFile: (p: string) => Promise<PositionalIO>,
  filename: string,
  local: string,
  depth: number,
): Promise<PositionalIO> {
  try {
    return await openFile(local);
  } catch (e) {
    const why = describeFsError(e);
    throw new OpenFailure(
      depth === 0
        ? `Could not open '${filename}': ${why}`
        : `Could not open backing file: Could not open '${filename}': ${why}`,
    );
  }
}

async function openDataFile(
  image: Qcow2Image,
  imageName: string,
  override: string | undefined,
  openFile: (p: string) => Promise<PositionalIO>,
  allocatedOf: (name: string) => Promise<number | undefined>,
  mayRead: MayRead | undefined,
): Promise<{ filename: string; io: PositionalIO; allocatedBytes?: number }> {
  const recorded = override ?? image.header.dataFileName;
  if (recorded === undefined || recorded === '')
    throw new UnreadableError(
      `'data-file' is required for this image (header extension 0x${C.EXT_DATA_FILE.toString(16)} is absent)`,
    );
  // The brief of this tool: like a backing file (relative to the image). QEMU 7.2 uses the working
  // directory; accept that location when the image-relative one does not exist.
  const candidates = override !== undefined ? [recorded] : [resolveRelativeTo(imageName, recorded), recorded];
  let lastError: unknown;
  for (const filename of [...new Set(candidates)]) {
    const local = localPath(filename);
    if (local === undefined || (mayRead && !(await mayRead(local)))) {
      lastError = new Error(
        local === undefined ? 'only local files are supported' : 'outside the folders this tool may read',
      );
      continue;
    }
    try {
      const io = await openFile(local);
      await confineOpened(io, filename, mayRead);
      const df: { filename: string; io: PositionalIO; allocatedBytes?: number } = { filename, io };
      const a = await allocatedOf(filename);
      if (a !== undefined) df.allocatedBytes = a;
      return df;
    } catch (e) {
      lastError = e;
    }
  }
  throw new UnreadableError(`Could not open data file '${recorded}': ${describeFsError(lastError)}`);
}

/** Decide a layer's format from its first bytes, as QEMU's probe would for the formats we read. */
export async function probeFormat(io: PositionalIO, filename: string): Promise<LayerFormat> {
  const head = await io.read(0, 512);
  if (head.length >= 8 && u32(head, 0) === C.QCOW2_MAGIC) {
    const version = u32(head, 4);
    if (version === 1)
      throw new UnreadableError(
        `Could not open '${filename}': image is in the old qcow (version 1) format, which is not supported`,
      );
    return 'qcow2';
  }
  const other = otherFormat(head);
  if (other)
    throw new UnreadableError(
      `Could not open '${filename}': image is in ${other} format, which is not supported (qcow2 and raw are)`,
    );
  return 'raw';
}

/** Names of other image formats QEMU would probe, recognised only to refuse them clearly. */
function otherFormat(head: Uint8Array): string | undefined {
  const ascii = (off: number, s: string) => s.split('').every((ch, i) => head[off + i] === ch.charCodeAt(0));
  if (ascii(0, 'KDMV') || ascii(0, '# Disk DescriptorFile')) return 'vmdk';
  if (ascii(0, 'conectix')) return 'vpc';
  if (ascii(0, 'vhdxfile')) return 'vhdx';
  if (ascii(0, 'QED\0')) return 'qed';
  if (ascii(0, 'LUKS\xba\xbe')) return 'luks';
  if (head.length >= 68 && u32(head, 64) === 0x7f10dabe) return 'vdi';
  return undefined;
}

/** A key that is equal for two names of the same file (for cycle detection). */
async function identity(name: string): Promise<string> {
  const filename = localPath(name) ?? name;
  try {
    const s = await stat(filename);
    return `${s.dev}:${s.ino}`;
  } catch {
    try {
      return await realpath(filename);
    } catch {
      return filename;
    }
  }
}

async function allocated(name: string): Promise<number | undefined> {
  const filename = localPath(name) ?? name;
  try {
    const s = await stat(filename);
    return s.isFile() ? s.blocks * 512 : undefined;
  } catch {
    return undefined;
  }
}

function describeFsError(e: unknown): string {
  const code = (e as { code?: string } | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'No such file or directory';
    case 'EACCES':
      return 'Permission denied';
    case 'EISDIR':
      return 'Is a directory';
    case 'ELOOP':
      return 'Too many levels of symbolic links';
    case 'EFTYPE':
      return 'not a regular file';
    default:
      return e instanceof Error ? e.message : String(e);
  }
}
