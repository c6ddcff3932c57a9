// Persistent bitmaps as QEMU's check sees them (block/qcow2-bitmap.c: bitmap_list_load,
// check_dir_entry, bitmap_table_load): the directory, each bitmap's table, and the data clusters.
// Decoding and QEMU's constraints live in format/bitmap.ts; this file reads the bytes as the check
// does (zeros past the end of the file) and turns a refusal into a BitmapError the check handles.
import * as C from '../format/constants.js';
import { decodeBitmapDirectory, decodeBitmapTable } from '../format/bitmap.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import { Qcow2FormatError } from '../base/errors.js';

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
  constructor(
    readonly reason: string,
    readonly field: string,
    readonly value: string | number,
  ) {
    super(reason);
  }
}

/** True when QEMU uses the bitmaps extension (the autoclear bit says it is consistent). */
export function bitmapsActive(image: Qcow2Image): boolean {
  return !!image.header.bitmaps && (image.header.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n;
}

function asBitmapError<T>(decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof Qcow2FormatError) throw new BitmapError(e.qemuReason, e.field, String(e.value));
    throw e;
  }
}

/** Past the end of the file QEMU reads zeros; so does the check. */
async function readAsQemu(image: Qcow2Image, offset: number, length: number): Promise<Uint8Array> {
  return offset >= image.fileSize ? new Uint8Array(length) : readPadded(image.io, offset, length);
}

export async function loadBitmapDirectory(image: Qcow2Image): Promise<BitmapDirectory> {
  const { directoryOffset: offset, directorySize: size, nbBitmaps } = image.header.bitmaps!;
  if (size === 0) throw new BitmapError('Requested bitmap directory size is zero', 'bitmaps.directory_size', 0);
  const dir = await readAsQemu(image, offset, size);
  const entries = asBitmapError(() =>
    decodeBitmapDirectory(dir, { clusterSize: image.clusterSize, virtualSize: image.virtualSize, nbBitmaps }),
  );
  const bitmaps = entries.map(
    (e): CheckedBitmap => ({
      name: e.name,
      tableOffset: e.tableOffset,
      tableSize: e.tableSize,
      flags: e.flags,
      granularityBits: e.granularityBits,
      type: e.type,
      entryOffset: offset + e.dirOffset,
    }),
  );
  return { offset, size, bitmaps };
}

/** Read a bitmap table; throws (QEMU: -EINVAL) when an entry is invalid. Returns raw bytes. */
export async function loadBitmapTable(image: Qcow2Image, bm: CheckedBitmap): Promise<Uint8Array> {
  const t = await readAsQemu(image, bm.tableOffset, bm.tableSize * 8);
  asBitmapError(() => decodeBitmapTable(t, image.clusterSize, bm.name));
  return t;
}
