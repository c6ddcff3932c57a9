/**
 * The snapshot table as the repair reads it: like Qcow2Image.readSnapshots, except that an entry
 * with more than 1024 bytes of extra data is read whole and its extra data truncated to 1024 bytes
 * (what `qemu-img check -r all` does: "Discarding too much extra metadata"), so the table can be
 * rewritten with every snapshot kept. Other problems are returned as an error (refused).
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { align8, decodeSnapshotEntry, snapshotEntryLength, type SnapshotEntry } from '../format/snapshot.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';

export interface RepairSnapshotTable {
  entries: SnapshotEntry[];
  /** Bytes the table occupies on disk now (entries padded to 8). */
  byteLength: number;
  /** Entries whose extra data was truncated: index and original size. */
  oversize: Array<{ index: number; size: number }>;
  error?: string;
}

export async function readSnapshotsForRepair(img: Qcow2Image): Promise<RepairSnapshotTable> {
  const h = img.header;
  const out: RepairSnapshotTable = { entries: [], byteLength: 0, oversize: [] };
  if (h.nbSnapshots === 0) return out;
  if (h.nbSnapshots > C.QCOW_MAX_SNAPSHOTS)
    return { ...out, error: `Snapshot table too large (nb_snapshots = ${h.nbSnapshots})` };
  if (h.snapshotsOffset % img.clusterSize !== 0)
    return { ...out, error: `Snapshot table offset invalid (0x${h.snapshotsOffset.toString(16)})` };
  let pos = 0;
  for (let i = 0; i < h.nbSnapshots; i++) {
    const at = h.snapshotsOffset + pos;
    // QEMU reads past the end as zeros. After an entry whose oversized extra data was discarded, that is
    // the only reading: the entry's place came from garbage (an empty, incomplete entry is rewritten, as
    // QEMU does). Otherwise the table was cut short and where its entries went is unknown: refused.
    if (at + C.SNAPSHOT_ENTRY_FIXED_SIZE > img.fileSize && !out.oversize.length)
      return { ...out, error: `snapshot table entry ${i} lies past the end of the file (0x${at.toString(16)})` };
    const fixed = await readPadded(img.io, at, C.SNAPSHOT_ENTRY_FIXED_SIZE);
    const extra = u32(fixed, 36);
    const len = snapshotEntryLength(fixed, 0);
    if (pos + len > C.QCOW_MAX_SNAPSHOTS_SIZE) return { ...out, error: `Snapshot table is too big (entry ${i})` };
    const whole = await readPadded(img.io, at, len);
    const e = decodeSnapshotEntry(whole, 0, pos);
    if (extra > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      out.oversize.push({ index: i, size: extra });
      e.extraData = e.extraData.slice(0, C.QCOW_MAX_SNAPSHOT_EXTRA_DATA);
      e.extraDataSize = C.QCOW_MAX_SNAPSHOT_EXTRA_DATA;
      e.entryLength = align8(
        C.SNAPSHOT_ENTRY_FIXED_SIZE +
          e.extraDataSize +
          new TextEncoder().encode(e.id).length +
          new TextEncoder().encode(e.name).length,
      );
    }
    out.entries.push(e);
    pos += len;
  }
  out.byteLength = pos;
  return out;
}
