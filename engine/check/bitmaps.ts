// Persistent bitmaps as QEMU's check sees them (block/qcow2-bitmap.c: bitmap_list_load,
// check_dir_entry, bitmap_table_load): the directory, each bitmap's table, and the data clusters.
import * as C from '../format/constants.js';
import { u16, u32, u64, utf8 } from '../format/bytes.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';

export interface CheckedBitmap {
  name: string;
  tableOffset: number;
  tableSize: number;
  flags: number;
  granularityBits: number;
  type: number;
  /** Byte offset of the directory entry in the file. */
  entryOffset: number;
}

export interface BitmapDirectory {
  offset: number;
  size: number;
  bitmaps: CheckedBitmap[];
}

/** Why QEMU refuses the directory (it then fails the open; in check mode the check). */
export class BitmapError extends Error {
  constructor(readonly reason: string, readonly field: string, readonly value: string | number) {
    super(reason);
  }
}

/** True when QEMU uses the bitmaps extension (the autoclear bit says it is consistent). */
export function bitmapsActive(image: Qcow2Image): boolean {
  return !!image.header.bitmaps && (image.header.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n;
}

export async function loadBitmapDirectory(image: Qcow2Image): Promise<BitmapDirectory> {
  const ext = image.header.bitmaps!;
  const cs = image.clusterSize;
  const { directoryOffset: offset, directorySize: size, nbBitmaps } = ext;
  if (size === 0) throw new BitmapError('Requested bitmap directory size is zero', 'bitmaps.directory_size', 0);
  const dir = offset >= image.fileSize ? new Uint8Array(size) : await readPadded(image.io, offset, size);
  const bitmaps: CheckedBitmap[] = [];
  let pos = 0;
  const broken = (): never => {
    throw new BitmapError('Broken bitmap directory', 'bitmaps.directory', `entry at +${pos}`);
  };
  while (pos < size) {
    if (pos + C.BITMAP_DIR_ENTRY_FIXED_SIZE > size) broken();
    if (bitmaps.length + 1 > nbBitmaps)
      throw new BitmapError('More bitmaps found than specified in header extension', 'bitmaps.nb_bitmaps', nbBitmaps);
    const tableOffset = u64(dir, pos);
    const tableSize = u32(dir, pos + 8);
    const flags = u32(dir, pos + 12);
    const type = dir[pos + 16]!;
    const granularityBits = dir[pos + 17]!;
    const nameSize = u16(dir, pos + 18);
    const extraDataSize = u32(dir, pos + 20);
    const entryLen = Math.ceil((C.BITMAP_DIR_ENTRY_FIXED_SIZE + extraDataSize + nameSize) / 8) * 8;
    if (pos + entryLen > size) broken();
    const name = utf8(dir, pos + C.BITMAP_DIR_ENTRY_FIXED_SIZE + extraDataSize, nameSize);
    if (extraDataSize !== 0) throw new BitmapError('Bitmap extra data is not supported', `bitmap[${name}].extra_data_size`, extraDataSize);
    const reservedFlags = ~(C.BME_FLAG_IN_USE | C.BME_FLAG_AUTO) >>> 0;
    const physBytes = tableSize * cs;
    const bad = tableSize === 0 || tableOffset === 0 || tableOffset % cs !== 0 || tableSize > C.BME_MAX_TABLE_SIZE
      || granularityBits > C.BME_MAX_GRANULARITY_BITS || granularityBits < C.BME_MIN_GRANULARITY_BITS
      || (flags & reservedFlags) !== 0 || nameSize > C.BME_MAX_NAME_SIZE || type !== C.BME_TYPE_DIRTY_TRACKING
      || physBytes > C.BME_MAX_PHYS_SIZE
      || ((flags & C.BME_FLAG_IN_USE) === 0 && image.virtualSize > physBytes * 8 * 2 ** granularityBits);
    if (bad) throw new BitmapError(`Bitmap '${name}' doesn't satisfy the constraints`, `bitmap[${name}]`, `flags=0x${flags.toString(16)}`);
    bitmaps.push({ name, tableOffset, tableSize, flags, granularityBits, type, entryOffset: offset + pos });
    pos += entryLen;
  }
  if (bitmaps.length !== nbBitmaps)
    throw new BitmapError('Less bitmaps found than specified in header extension', 'bitmaps.nb_bitmaps', nbBitmaps);
  return { offset, size, bitmaps };
}

/** Read a bitmap table; throws (QEMU: -EINVAL) when an entry is invalid. Returns raw bytes. */
export async function loadBitmapTable(image: Qcow2Image, bm: CheckedBitmap): Promise<Uint8Array> {
  const bytes = bm.tableSize * 8;
  const t = bm.tableOffset >= image.fileSize ? new Uint8Array(bytes) : await readPadded(image.io, bm.tableOffset, bytes);
  const cs = image.clusterSize;
  for (let i = 0; i < bm.tableSize; i++) {
    const hi = u32(t, 8 * i);
    const lo = u32(t, 8 * i + 4);
    const bad = (hi & C.BME_RESERVED_MASK_HI) !== 0 || (lo & C.BME_RESERVED_MASK_LO) !== 0;
    const off = (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
    if (bad || (off !== 0 && ((lo & C.BME_ALL_ONES_LO) !== 0 || off % cs !== 0)))
      throw new BitmapError(`Could not read bitmap_table table from image for bitmap '${bm.name}': Invalid argument`,
        `bitmap[${bm.name}].table[${i}]`, `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`);
  }
  return t;
}
