// Growing the virtual disk and its active L1 table, in an order an interruption cannot break.
import * as C from '../format/constants.js';
import { putU32, putU64 } from '../format/bytes.js';
import { WriteError } from './write-error.js';
import type { Qcow2Writer } from './writer.js';

export async function growVirtualSize(w: Qcow2Writer, newSize: number): Promise<void> {
  if (newSize % C.SECTOR_SIZE !== 0)
    throw new WriteError('resize', `size ${newSize} is not a multiple of 512`, { usage: true });
  if (newSize < w.header.size)
    throw new WriteError('resize', `shrinking (${w.header.size} -> ${newSize}) is not supported`, {
      usage: true,
    });
  const need = Math.ceil(newSize / w.geo.l1Coverage);
  if (need > w.header.l1Size) await w.growL1(need);
  const b = new Uint8Array(8);
  putU64(b, 0, newSize);
  w.event('header_update');
  await w.io.write(C.HDR.size, b);
  await w.barrier();
  w.header.size = newSize;
}

/** The L1 table grown to `entries` (see Qcow2Writer.growL1 for the order). */
export async function growL1Table(w: Qcow2Writer, entries: number): Promise<void> {
  const cs = w.clusterSize;
  if (entries * 8 > C.QCOW_MAX_L1_SIZE)
    throw new WriteError('L1 growth', `L1 table would exceed ${C.QCOW_MAX_L1_SIZE} bytes`);
  const clusters = Math.ceil((entries * 8) / cs);
  w.event('l1_grow_alloc_table');
  const start = await w.alloc.alloc(clusters);
  await w.refCache.flush();
  const table = new Uint8Array(clusters * cs);
  table.set(w.l1);
  w.event('l1_grow_write_table');
  await w.io.write(start * cs, table);
  await w.barrier();
  const sw = new Uint8Array(12);
  putU32(sw, 0, entries);
  putU64(sw, 4, start * cs);
  w.event('l1_grow_activate_table');
  await w.io.write(C.HDR.l1Size, sw);
  await w.barrier();
  const oldOff = w.header.l1TableOffset;
  const oldClusters = Math.ceil((w.header.l1Size * 8) / cs);
  w.l1 = table.slice(0, entries * 8);
  w.header.l1Size = entries;
  w.header.l1TableOffset = start * cs;
  w.overlap.invalidate();
  if (oldOff !== 0 && oldClusters > 0) await w.alloc.free(oldOff / cs, oldClusters);
}
