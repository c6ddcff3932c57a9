// What `qemu-img info` reports about an image, gathered from an opened Qcow2Image (or a raw file)
// the way QEMU 7.2 gathers it: bdrv_query_image_info + qcow2_get_specific_info. Reading only.
import * as C from '../format/constants.js';
import { u64n } from '../format/bytes.js';
import { bitmapFlagNames, bitmapTableSizeNeeded, decodeBitmapDirectory, decodeBitmapTable } from '../format/bitmap.js';
import { decodeLuksHeader, type LuksInfo } from '../format/luks.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError } from '../base/errors.js';
import type { Qcow2Image } from './qcow2-image.js';
import { resolveRelativeTo } from './paths.js';

export interface SnapshotInfo {
  id: string;
  name: string;
  /** int64 as QEMU reports it (the 64-bit extra-data field when present). */
  vmStateSize: bigint;
  dateSec: number;
  dateNsec: number;
  /** Guest run time split as QEMU splits it: seconds and the nanosecond remainder. */
  vmClockSec: bigint;
  vmClockNsec: number;
  /** Absent when the entry has no icount or it is -1 (record/replay off). */
  icount?: bigint;
}

export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: string[];
}

export type EncryptInfo = { format: 'aes' } | ({ format: 'luks' } & LuksInfo);

/** A header extension QEMU does not know: kept, and listed by us. */
export interface UnknownExtensionInfo {
  type: number;
  /** Byte offset of its data in cluster 0. */
  offset: number;
  length: number;
}

export interface Qcow2SpecificInfo {
  compat: '0.10' | '1.1';
  dataFile?: string;
  dataFileRaw?: boolean;
  extendedL2?: boolean;
  lazyRefcounts?: boolean;
  corrupt?: boolean;
  refcountBits: number;
  encrypt?: EncryptInfo;
  bitmaps?: BitmapInfo[];
  compressionType: 'zlib' | 'zstd';
  unknownExtensions: UnknownExtensionInfo[];
}

export interface ImageInfo {
  filename: string;
  format: 'qcow2' | 'raw';
  dirtyFlag: boolean;
  /** Bytes allocated on the host file system (st_blocks * 512); unknown for in-memory images. */
  actualSize?: number;
  /** Exact: a bigint when the header holds more than a number can (hostile images). */
  virtualSize: number | bigint;
  clusterSize?: number;
  encrypted?: boolean;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFilenameFormat?: string;
  snapshots?: SnapshotInfo[];
  formatSpecific?: Qcow2SpecificInfo;
  /** What QEMU prints as warnings while opening (stale bitmaps extension). Not part of the JSON. */
  warnings: string[];
}

export interface InfoOptions {
  /** The name the image was opened by (QEMU reports it as given). */
  filename: string;
  actualSize?: number;
}

/** C strings end at the first NUL. */
const cString = (s: string): string => {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
};

/** Read `length` bytes at `offset`; past the end of the file reads zeros (as QEMU's file driver). */
async function readOrZeros(io: PositionalIO, fileSize: number, offset: number, length: number): Promise<Uint8Array> {
  if (offset >= fileSize) return new Uint8Array(length);
  return readPadded(io, offset, length);
}

export async function qcow2ImageInfo(img: Qcow2Image, opts: InfoOptions): Promise<ImageInfo> {
  const h = img.header;
  const warnings: string[] = [];
  const info: ImageInfo = {
    filename: opts.filename,
    format: 'qcow2',
    dirtyFlag: h.version === 3 && img.isDirty,
    virtualSize: h.size <= Number.MAX_SAFE_INTEGER ? h.size : u64n(await readPadded(img.io, C.HDR.size, 8), 0),
    clusterSize: img.clusterSize,
    warnings,
  };
  if (opts.actualSize !== undefined) info.actualSize = opts.actualSize;
  if (h.cryptMethod !== C.CRYPT_NONE) info.encrypted = true;

  const backing = h.backingFile === undefined ? '' : cString(h.backingFile);
  if (backing !== '') {
    info.backingFilename = backing;
    info.fullBackingFilename = resolveRelativeTo(opts.filename, backing);
    const fmt = h.backingFormat === undefined ? '' : cString(h.backingFormat);
    if (fmt !== '') info.backingFilenameFormat = fmt;
  }

  // In QEMU's open order: the LUKS header (read with the extensions), snapshots, then bitmaps.
  const encrypt = await readEncryptInfo(img);
  // QEMU cannot list snapshots of an image with an external data file.
  if (h.nbSnapshots > 0 && !img.hasExternalData) info.snapshots = await readSnapshotInfo(img);
  const bitmaps = await readBitmapInfo(img, warnings);

  const spec: Qcow2SpecificInfo = {
    compat: h.version === 2 ? '0.10' : '1.1',
    refcountBits: 2 ** h.refcountOrder,
    compressionType: h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
    unknownExtensions: h.extensions
      .filter((e) => !e.known)
      .map((e) => ({ type: e.type, offset: e.offset, length: e.length })),
  };
  if (h.version === 3) {
    spec.lazyRefcounts = (h.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
    spec.corrupt = img.isCorrupt;
    spec.extendedL2 = img.geo.extendedL2;
    if (bitmaps) spec.bitmaps = bitmaps;
    if (h.dataFileName !== undefined) spec.dataFile = cString(h.dataFileName);
    if (img.hasExternalData) spec.dataFileRaw = (h.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  }
  if (encrypt) spec.encrypt = encrypt;
  info.formatSpecific = spec;
  return info;
}

/** A raw image (a raw layer of a backing chain, or a file that is not qcow2): size only. */
export async function rawImageInfo(io: PositionalIO, opts: InfoOptions): Promise<ImageInfo> {
  // QEMU counts a file's length in 512-byte sectors, rounding up.
  const size = Math.ceil((await io.size()) / C.SECTOR_SIZE) * C.SECTOR_SIZE;
  const info: ImageInfo = { filename: opts.filename, format: 'raw', dirtyFlag: false, virtualSize: size, warnings: [] };
  if (opts.actualSize !== undefined) info.actualSize = opts.actualSize;
  return info;
}

async function readEncryptInfo(img: Qcow2Image): Promise<EncryptInfo | undefined> {
  const h = img.header;
  if (h.cryptMethod === C.CRYPT_AES) return { format: 'aes' };
  if (h.cryptMethod !== C.CRYPT_LUKS || !h.crypto) return undefined;
  // QEMU reads the LUKS header through the extension's window and refuses reads outside it.
  if (h.crypto.length < C.LUKS_HEADER_SIZE)
    throw new Qcow2FormatError(
      'Request for data outside of extension header',
      'header_extension.crypto.length',
      h.crypto.length,
    );
  const buf = await readOrZeros(img.io, img.fileSize, h.crypto.offset, C.LUKS_HEADER_SIZE);
  return {
    format: 'luks',
    ...pastEof(img, h.crypto.offset, 'header_extension.crypto.offset', () => decodeLuksHeader(buf)),
  };
}

/**
 * The bitmaps as QEMU lists them, after the checks QEMU makes when it opens the image (directory
 * constraints, unique names, table entries and table size of bitmaps not in use).
 */
async function readBitmapInfo(img: Qcow2Image, warnings: string[]): Promise<BitmapInfo[] | undefined> {
  const h = img.header;
  if (!h.bitmaps) return undefined;
  if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) {
    warnings.push(
      h.version === 2
        ? 'This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent'
        : 'a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent',
    );
    warnings.push("Some clusters may be leaked, run 'qcow2-doctor check' on the image file to see them.");
    return undefined;
  }
  const b = h.bitmaps;
  const dir = await readOrZeros(img.io, img.fileSize, b.directoryOffset, b.directorySize);
  const entries = pastEof(img, b.directoryOffset, 'header_extension.bitmaps.directory_offset', () =>
    decodeBitmapDirectory(dir, { clusterSize: img.clusterSize, virtualSize: h.size, nbBitmaps: b.nbBitmaps }),
  );
  const names = new Set<string>();
  const checkedTables = new Set<string>();
  for (const e of entries) {
    const inUse = (e.flags & C.BME_FLAG_IN_USE) !== 0;
    // QEMU skips an in-use bitmap whose name it already loaded, and refuses any other duplicate.
    if (names.has(e.name)) {
      if (inUse) continue;
      throw new Qcow2FormatError(`Bitmap already exists: ${e.name}`, `bitmap '${e.name}'.name`, e.name);
    }
    names.add(e.name);
    if (inUse) continue; // QEMU does not load the data of a bitmap in use
    const key = `${e.tableOffset}:${e.tableSize}`;
    if (!checkedTables.has(key)) {
      // Only the part inside the file can hold non-zero (possibly invalid) entries.
      const inFile = Math.max(0, Math.min(e.tableSize * 8, img.fileSize - e.tableOffset));
      if (inFile > 0) decodeBitmapTable(await readPadded(img.io, e.tableOffset, inFile), img.clusterSize, e.name);
      checkedTables.add(key);
    }
    if (e.tableSize !== bitmapTableSizeNeeded(h.size, e.granularityBits, img.clusterSize))
      throw new Qcow2FormatError(
        `Could not read bitmap '${e.name}' from image: Invalid argument`,
        `bitmap '${e.name}'.bitmap_table_size`,
        e.tableSize,
      );
  }
  if (h.version !== 3) return undefined;
  return entries.map((e) => ({ name: e.name, granularity: 2 ** e.granularityBits, flags: bitmapFlagNames(e.flags) }));
}

/**
 * A structure past the end of the file reads as zeros (as in QEMU), so QEMU's refusal is about
 * zeros; keep its wording but name the offset that is really wrong.
 */
function pastEof<T>(img: Qcow2Image, offset: number, field: string, decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof Qcow2FormatError && offset >= img.fileSize)
      throw new Qcow2FormatError(
        e.qemuReason,
        field,
        `0x${offset.toString(16)} (beyond end of file, ${img.fileSize} bytes)`,
      );
    throw e;
  }
}

async function readSnapshotInfo(img: Qcow2Image): Promise<SnapshotInfo[]> {
  const { entries } = await img.readSnapshots();
  const out: SnapshotInfo[] = [];
  for (const e of entries) {
    // 64-bit fields exactly: the extra data is kept raw; the VM clock is re-read only when a
    // number could not hold it.
    let clock = BigInt(e.vmClockNsec);
    if (e.vmClockNsec >= Number.MAX_SAFE_INTEGER)
      clock = u64n(await readPadded(img.io, img.header.snapshotsOffset + e.tableOffset + 24, 8), 0);
    const vmState = e.extraDataSize >= 8 ? u64n(e.extraData, 0) : BigInt(e.vmStateSize32);
    const s: SnapshotInfo = {
      id: cString(e.id),
      name: cString(e.name),
      vmStateSize: BigInt.asIntN(64, vmState),
      dateSec: e.dateSec,
      dateNsec: e.dateNsec,
      vmClockSec: clock / 1_000_000_000n,
      vmClockNsec: Number(clock % 1_000_000_000n),
    };
    if (e.extraDataSize >= 24) {
      const icount = u64n(e.extraData, 16);
      if (icount !== 0xffffffffffffffffn) s.icount = BigInt.asIntN(64, icount);
    }
    out.push(s);
  }
  return out;
}
