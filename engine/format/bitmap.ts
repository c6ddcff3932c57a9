// Persistent dirty bitmaps: the bitmap directory and bitmap tables (spec "Bitmaps" section;
// QEMU: block/qcow2-bitmap.c). Decoding applies QEMU's own constraints with QEMU's wording, since
// QEMU refuses to open an image whose directory breaks them (even for checking).
import * as C from './constants.js';
import { hex64, u16, u32, u64, utf8 } from './bytes.js';
import { Qcow2FormatError } from '../base/errors.js';

export interface BitmapDirEntry {
  /** Byte offset of the entry inside the directory. */
  dirOffset: number;
  tableOffset: number;
  /** Bitmap table size in 8-byte entries. */
  tableSize: number;
  flags: number;
  type: number;
  granularityBits: number;
  /** Name as QEMU copies it (g_strndup: stops at a NUL byte). */
  name: string;
  /** name_size field (bytes on disk). */
  nameSize: number;
  extraDataSize: number;
  /** Total bytes of the entry including padding. */
  entryLength: number;
}

export interface BitmapDirContext {
  clusterSize: number;
  /** Virtual disk size in bytes (bitmaps not in use must cover it). */
  virtualSize: number;
  /** nb_bitmaps from the header extension. */
  nbBitmaps: number;
}

const fail = (reason: string, field: string, value: string | number | bigint): never => {
  throw new Qcow2FormatError(reason, field, value);
};

const align8 = (n: number): number => Math.ceil(n / 8) * 8;

/** Why QEMU's check_dir_entry rejects an entry, or undefined when it satisfies the constraints. */
export function dirEntryViolation(
  e: BitmapDirEntry,
  ctx: Pick<BitmapDirContext, 'clusterSize' | 'virtualSize'>,
): { field: string; value: number } | undefined {
  if (e.tableSize === 0) return { field: 'bitmap_table_size', value: e.tableSize };
  if (e.tableOffset === 0 || e.tableOffset % ctx.clusterSize !== 0)
    return { field: 'bitmap_table_offset', value: e.tableOffset };
  if (e.tableSize > C.BME_MAX_TABLE_SIZE) return { field: 'bitmap_table_size', value: e.tableSize };
  if (e.granularityBits > C.BME_MAX_GRANULARITY_BITS || e.granularityBits < C.BME_MIN_GRANULARITY_BITS)
    return { field: 'granularity_bits', value: e.granularityBits };
  if ((e.flags & ~(C.BME_FLAG_IN_USE | C.BME_FLAG_AUTO)) !== 0) return { field: 'flags', value: e.flags >>> 0 };
  if (e.nameSize > C.BME_MAX_NAME_SIZE) return { field: 'name_size', value: e.nameSize };
  if (e.type !== C.BME_TYPE_DIRTY_TRACKING) return { field: 'type', value: e.type };
  const physBytes = e.tableSize * ctx.clusterSize;
  if (physBytes > C.BME_MAX_PHYS_SIZE) return { field: 'bitmap_table_size', value: e.tableSize };
  // A bitmap saved consistently must cover the whole disk: bits = physBytes * 8, each 2^g bytes.
  if ((e.flags & C.BME_FLAG_IN_USE) === 0 && ctx.virtualSize > physBytes * 8 * 2 ** e.granularityBits)
    return { field: 'bitmap_table_size', value: e.tableSize };
  return undefined;
}

/**
 * Decode the bitmap directory (`buf` = exactly bitmap_directory_size bytes), walking it as QEMU's
 * bitmap_list_load does and refusing with QEMU's messages.
 */
export function decodeBitmapDirectory(buf: Uint8Array, ctx: BitmapDirContext): BitmapDirEntry[] {
  if (buf.length === 0) fail('Requested bitmap directory size is zero', 'header_extension.bitmaps.directory_size', 0);
  if (buf.length > C.QCOW_MAX_BITMAP_DIRECTORY_SIZE)
    fail('Requested bitmap directory size is too big', 'header_extension.bitmaps.directory_size', buf.length);
  const out: BitmapDirEntry[] = [];
  let off = 0;
  while (off < buf.length) {
    const where = `bitmap_directory[${out.length}]`;
    if (off + C.BITMAP_DIR_ENTRY_FIXED_SIZE > buf.length) fail('Broken bitmap directory', where, `offset ${off}`);
    if (out.length + 1 > ctx.nbBitmaps)
      fail(
        'More bitmaps found than specified in header extension',
        'header_extension.bitmaps.nb_bitmaps',
        ctx.nbBitmaps,
      );
    const e = readDirEntry(buf, off);
    if (off + e.entryLength > buf.length) fail('Broken bitmap directory', `${where}.name_size`, e.nameSize);
    if (e.extraDataSize !== 0) fail('Bitmap extra data is not supported', `${where}.extra_data_size`, e.extraDataSize);
    const bad = dirEntryViolation(e, ctx);
    if (bad) fail(`Bitmap '${e.name}' doesn't satisfy the constraints`, `${where}.${bad.field}`, bad.value);
    out.push(e);
    off += e.entryLength;
  }
  if (out.length !== ctx.nbBitmaps)
    fail('Less bitmaps found than specified in header extension', 'header_extension.bitmaps.nb_bitmaps', ctx.nbBitmaps);
  return out;
}

/**
 * One directory entry at `off` as stored (its fixed part must fit in `buf`); the name is cut at
 * the end of `buf` when it runs past it. The one reader of the entry layout.
 */
function readDirEntry(buf: Uint8Array, off: number): BitmapDirEntry {
  const nameSize = u16(buf, off + 18);
  const extraDataSize = u32(buf, off + 20);
  const entryLength = align8(C.BITMAP_DIR_ENTRY_FIXED_SIZE + nameSize + extraDataSize);
  const nameStart = Math.min(buf.length, off + C.BITMAP_DIR_ENTRY_FIXED_SIZE + extraDataSize);
  const nameLimit = Math.min(buf.length, nameStart + nameSize);
  let nameEnd = nameStart;
  while (nameEnd < nameLimit && buf[nameEnd] !== 0) nameEnd++;
  return {
    dirOffset: off,
    tableOffset: u64(buf, off),
    tableSize: u32(buf, off + 8),
    flags: u32(buf, off + 12),
    type: buf[off + 16]!,
    granularityBits: buf[off + 17]!,
    name: utf8(buf, nameStart, nameEnd - nameStart),
    nameSize,
    extraDataSize,
    entryLength,
  };
}

/**
 * The directory read as far as it goes, without QEMU's constraints: for readers that must go on
 * past damage (strip, repair references, the app's overview). At most `nbBitmaps` entries (and
 * QEMU's maximum); stops at the first entry whose fixed part does not fit, and says why when an
 * entry (kept) runs past the directory.
 */
export function walkBitmapDirectory(
  buf: Uint8Array,
  nbBitmaps: number,
): { entries: BitmapDirEntry[]; problem?: string } {
  const entries: BitmapDirEntry[] = [];
  let off = 0;
  const max = Math.min(nbBitmaps, C.QCOW_MAX_BITMAPS);
  while (entries.length < max && off + C.BITMAP_DIR_ENTRY_FIXED_SIZE <= buf.length) {
    const e = readDirEntry(buf, off);
    entries.push(e);
    if (off + C.BITMAP_DIR_ENTRY_FIXED_SIZE + e.extraDataSize + e.nameSize > buf.length)
      return { entries, problem: `bitmap directory entry ${entries.length - 1} runs past the directory` };
    off += e.entryLength;
  }
  return { entries };
}

/** QEMU's flag names for `qemu-img info` (in-use, then auto; reserved bits are not listed). */
export function bitmapFlagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & C.BME_FLAG_IN_USE) out.push('in-use');
  if (flags & C.BME_FLAG_AUTO) out.push('auto');
  return out;
}

/** One bitmap table entry, as (hi, lo) halves. */
export interface BitmapTableEntry {
  /** Host offset of the data cluster; 0 = not stored (all zeros, or all ones with bit 0). */
  offset: number;
  allOnes: boolean;
}

/** Why QEMU's check_table_entry rejects an entry (reserved bits, bit 0 with an offset, misalignment). */
export function tableEntryViolation(hi: number, lo: number, clusterSize: number): string | undefined {
  if ((hi & C.BME_RESERVED_MASK_HI) !== 0 || (lo & C.BME_RESERVED_MASK_LO) !== 0) return 'reserved bits set';
  const offset = (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
  if (offset !== 0) {
    if (lo & C.BME_ALL_ONES_LO) return 'all-ones flag with an offset';
    if (offset % clusterSize !== 0) return 'offset not cluster aligned';
  }
  return undefined;
}

/**
 * Decode a bitmap table (`buf` = tableSize * 8 bytes), refusing a bad entry with QEMU's message
 * ("Could not read bitmap_table table from image for bitmap '…': Invalid argument").
 */
export function decodeBitmapTable(buf: Uint8Array, clusterSize: number, bitmapName: string): BitmapTableEntry[] {
  const out: BitmapTableEntry[] = [];
  for (let i = 0; i + 8 <= buf.length; i += 8) {
    const hi = u32(buf, i);
    const lo = u32(buf, i + 4);
    const why = tableEntryViolation(hi, lo, clusterSize);
    if (why)
      fail(
        `Could not read bitmap_table table from image for bitmap '${bitmapName}': Invalid argument`,
        `bitmap '${bitmapName}'.table[${i / 8}]`,
        `0x${hex64(hi, lo)} (${why})`,
      );
    out.push({
      offset: (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0),
      allOnes: (lo & C.BME_ALL_ONES_LO) !== 0,
    });
  }
  return out;
}

/** Table entries QEMU expects for a bitmap of the disk: clusters holding ceil(ceil(size/g)/8) bytes. */
export function bitmapTableSizeNeeded(virtualSize: number, granularityBits: number, clusterSize: number): number {
  const bits = Math.ceil(virtualSize / 2 ** granularityBits);
  return Math.ceil(Math.ceil(bits / 8) / clusterSize);
}
