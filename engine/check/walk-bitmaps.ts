// Persistent bitmaps: loaded as QEMU loads them while opening (a broken directory fails the open),
// then counted in calculate_refcounts (directory, tables, data clusters). Beyond QEMU: the bits past
// the end of the disk in a bitmap's last data cluster must be zero.
import { HostRole } from '../contract/roles.js';
import * as C from '../format/constants.js';
import { Qcow2FormatError } from '../base/errors.js';
import { decodeBitmapTable } from '../format/bitmap.js';
import { u32 } from '../format/bytes.js';
import type { Reference, TableRead } from '../image/traversal/index.js';
import { readPadded } from '../io/positional-io.js';
import { BitmapError, bitmapsActive, loadBitmapDirectory, loadBitmapTable } from './bitmaps.js';
import { CheckAbort, type CheckState, TWO32 } from './state.js';

/** QEMU prints this hint without a newline (the next stderr line is glued to it); the CLI does the same. */
export const BITMAPS_LEAK_HINT = "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.";

/** Before the walk: the bitmap directory as QEMU loads it at open. */
export async function openBitmaps(state: CheckState): Promise<void> {
  const img = state.image;
  if (img.header.bitmaps && !bitmapsActive(img)) {
    // QEMU warns while opening and then ignores the extension (its clusters show up as leaks).
    state.say(
      img.header.version === 2
        ? 'qemu-img: warning: This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent'
        : 'qemu-img: warning: a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent',
    );
    state.say(BITMAPS_LEAK_HINT);
    state.anomalies.add('bitmaps-inconsistent');
    return;
  }
  if (!bitmapsActive(img)) return;
  try {
    state.bitmapDir = await loadBitmapDirectory(img);
    // QEMU loads the tables of bitmaps not marked in-use while opening.
    for (const bm of state.bitmapDir.bitmaps) if ((bm.flags & C.BME_FLAG_IN_USE) === 0) await loadBitmapTable(img, bm);
  } catch (e) {
    if (!(e instanceof BitmapError)) throw e;
    state.counters.checkErrors++;
    state.anomalies.add('bitmap-invalid', { referrer: { kind: e.field } });
    throw new CheckAbort(e.reason, true);
  }
}

/**
 * calculate_refcounts' step 7 (qcow2_check_bitmaps_refcounts) on the traversal: the directory, each
 * bitmap's table (checked as QEMU loads it) and its data clusters counted; then, beyond QEMU, the
 * bits past the end of the disk. Bitmaps are matched to the directory QEMU loaded at open by ordinal.
 */
export class BitmapCounting {
  private readonly names = new Set<string>();

  constructor(private readonly state: CheckState) {}

  reference(r: Reference): void {
    const state = this.state;
    const dir = state.bitmapDir;
    if (!dir) return;
    if (r.target === 'bitmap-directory') {
      state.incRange(dir.offset, dir.size, HostRole.BitmapDirectory, { kind: 'bitmap-directory', table: 'header' });
      state.claimMeta(dir.offset, dir.size, HostRole.BitmapDirectory, 'bitmap directory');
    } else if (r.target === 'bitmap-table') {
      const bm = dir.bitmaps[r.from.index!];
      if (!bm) return;
      if (this.names.has(bm.name))
        state.anomalies.add('bitmap-duplicate-name', { referrer: { kind: 'bitmap-directory', table: bm.entryOffset } });
      this.names.add(bm.name);
      state.incRange(bm.tableOffset, bm.tableSize * 8, HostRole.BitmapTable, {
        kind: 'bitmap-table',
        table: 'bitmap-directory',
        tableOffset: bm.entryOffset,
      });
      state.claimMeta(bm.tableOffset, bm.tableSize * 8, HostRole.BitmapTable, 'bitmap table');
    } else if (r.target === 'bitmap-data') {
      state.incRange(r.offset, state.clusterSize, HostRole.BitmapData, {
        kind: 'bitmap-data',
        table: 'bitmap-table',
        tableOffset: r.from.table,
        index: r.from.index,
      });
      state.claimMeta(r.offset, state.clusterSize, HostRole.BitmapData, 'bitmap data');
    }
  }

  /** A bitmap table as read: QEMU refuses an invalid entry (-EINVAL), which ends the check. */
  table(t: TableRead, bytes: Uint8Array): void {
    const bm = this.state.bitmapDir?.bitmaps[t.index!];
    if (!bm) return;
    try {
      decodeBitmapTable(bytes, this.state.clusterSize, bm.name);
    } catch (e) {
      if (!(e instanceof Qcow2FormatError)) throw e;
      this.state.counters.corruptions++;
      this.state.anomalies.add('bitmap-invalid', { referrer: { kind: 'bitmap-directory', table: bm.entryOffset } });
      throw new CheckAbort('Invalid argument');
    }
  }

  /** After a table's data clusters were counted. */
  async tableEnd(t: TableRead, bytes: Uint8Array): Promise<void> {
    const bm = this.state.bitmapDir?.bitmaps[t.index!];
    if (bm && (bm.flags & C.BME_FLAG_IN_USE) === 0) await bitmapTailBits(this.state, bm, bytes);
  }
}

/** Beyond QEMU: bits past the end of the disk in a bitmap's last data cluster must be zero. */
async function bitmapTailBits(
  state: CheckState,
  bm: { name: string; tableOffset: number; tableSize: number; granularityBits: number; entryOffset: number },
  t: Uint8Array,
): Promise<void> {
  const cs = state.clusterSize;
  const bits = Math.ceil(state.image.virtualSize / 2 ** bm.granularityBits);
  const bytes = Math.ceil(bits / 8);
  const last = Math.floor(Math.max(0, bytes - 1) / cs);
  // The traversal reads a table only up to the end of the file; entries past it are empty.
  if (last >= bm.tableSize || 8 * last + 8 > t.length) return;
  const off = (u32(t, 8 * last) & C.BME_OFFSET_MASK_HI) * TWO32 + ((u32(t, 8 * last + 4) & C.BME_OFFSET_MASK_LO) >>> 0);
  if (off === 0 || off >= state.fileSize) return;
  const data = await readPadded(state.image.io, off, cs);
  const firstBit = bits - last * cs * 8; // first unused bit inside this cluster
  let dirty = false;
  const byte = firstBit >>> 3;
  if (firstBit % 8 !== 0 && byte < data.length && data[byte]! >>> (firstBit % 8) !== 0) dirty = true;
  for (let b = Math.ceil(firstBit / 8); b < data.length && !dirty; b++) if (data[b] !== 0) dirty = true;
  if (dirty)
    state.anomalies.add('bitmap-tail-bits', {
      cluster: Math.floor(off / cs),
      referrer: { kind: 'bitmap-table', table: bm.tableOffset, index: last },
    });
}
