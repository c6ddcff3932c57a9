// The host clusters that surviving metadata proves are metadata: the header, the L1 tables, the L2
// tables the disks are read through, the refcount table and the blocks it names, the snapshot table
// and bitmap structures. QEMU never puts guest data there, so a data entry pointing at one is damaged
// (redirected): the guest range it maps is lost, not read from the table's bytes.
import { walkBitmapDirectory } from '../format/bitmap.js';
import { u32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { hx, readInFile, type ReconstructState } from './reconstruct-state.js';
import type { FoundSnapshots } from './snapshot-recovery.js';
import type { GuestView } from './types.js';

/** Bitmap data clusters are only listed up to this many (the directory is hostile input). */
const MAX_BITMAP_CLUSTERS = 1 << 20;

/** Host cluster index → what it holds, for every cluster proved to be metadata. */
export async function provenMetadata(
  st: ReconstructState,
  views: GuestView[],
  snaps: FoundSnapshots,
): Promise<Map<number, string>> {
  const { cs, hints, fileSize } = st;
  const out = new Map<number, string>();
  const mark = (offset: number, bytes: number, what: string): void => {
    if (offset <= 0 || offset >= fileSize || bytes <= 0) return;
    const last = Math.floor((Math.min(offset + bytes, fileSize) - 1) / cs);
    for (let c = Math.floor(offset / cs); c <= last; c++) if (!out.has(c)) out.set(c, `${what} at ${hx(c * cs)}`);
  };
  // QEMU keeps the header and its extensions in the first cluster, whatever became of them.
  out.set(0, 'header at 0x0');
  for (const v of views) {
    const label = v.kind === 'active' ? 'active L1 table' : `L1 table of snapshot ${v.id}`;
    // A snapshot table found by scanning and not counted live may be a stale copy: its L1s prove nothing.
    const named = v.l1Source === 'header' || (v.l1Source === 'snapshot-table' && snaps.tableBytes !== undefined);
    if (v.l1Offset !== undefined && named) {
      const entries = v.kind === 'active' ? (hints.l1Size ?? 0) : (snaps.list.find((s) => s.id === v.id)?.l1Size ?? 0);
      mark(v.l1Offset, Math.max(entries * 8, 1), label);
    }
    for (const p of v.l2.values()) if (p.confidence === 1) mark(p.host, cs, 'L2 table');
  }
  if (snaps.table && snaps.tableBytes) mark(snaps.table.offset, snaps.tableBytes, 'snapshot table');
  const rt = await headerRefcountTable(st);
  if (rt) {
    mark(rt.offset, rt.bytes, 'refcount table');
    // Only a block the scan also recognises by its content: a damaged entry proves nothing.
    for (const off of rt.entries) if (off % cs === 0 && st.refblocks.has(off)) mark(off, cs, 'refcount block');
  }
  if (hints.intact && hints.bitmaps) await markBitmaps(st, hints.bitmaps, mark);
  return out;
}

async function markBitmaps(
  st: ReconstructState,
  ext: { nbBitmaps: number; directoryOffset: number; directorySize: number },
  mark: (offset: number, bytes: number, what: string) => void,
): Promise<void> {
  const { cs } = st;
  const dirBytes = Math.min(ext.directorySize, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE);
  if (ext.directoryOffset % cs !== 0 || dirBytes === 0) return;
  mark(ext.directoryOffset, dirBytes, 'bitmap directory');
  const dir = await readInFile(st, ext.directoryOffset, dirBytes);
  let budget = MAX_BITMAP_CLUSTERS;
  for (const e of walkBitmapDirectory(dir, ext.nbBitmaps).entries) {
    if (e.tableOffset % cs !== 0 || e.tableSize === 0 || e.tableSize > C.BME_MAX_TABLE_SIZE) continue;
    const n = Math.min(e.tableSize, budget);
    budget -= n;
    mark(e.tableOffset, n * 8, 'bitmap table');
    const table = await readInFile(st, e.tableOffset, n * 8);
    for (let p = 0; p + 8 <= table.length; p += 8) {
      const hi = u32(table, p);
      const lo = u32(table, p + 4);
      if ((hi & C.BME_RESERVED_MASK_HI) !== 0 || (lo & C.BME_RESERVED_MASK_LO) !== 0) continue;
      const off = (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
      if (off % cs === 0) mark(off, cs, 'bitmap data');
    }
    if (budget <= 0) return;
  }
}

/** The refcount table the intact header names (its offset, its length in bytes) and the offsets its entries hold. */
export async function headerRefcountTable(
  st: ReconstructState,
): Promise<{ offset: number; bytes: number; entries: number[] } | undefined> {
  const { hints, cs } = st;
  if (!hints.intact || hints.refcountTableOffset === undefined) return undefined;
  const bytes = Math.min((hints.refcountTableClusters ?? 1) * cs, C.QCOW_MAX_REFTABLE_SIZE);
  const rt = await readInFile(st, hints.refcountTableOffset, bytes);
  const entries: number[] = [];
  for (let p = 0; p + 8 <= rt.length; p += 8) entries.push(u32(rt, p) * 0x1_0000_0000 + (u32(rt, p + 4) >>> 0));
  return { offset: hints.refcountTableOffset, bytes, entries };
}
