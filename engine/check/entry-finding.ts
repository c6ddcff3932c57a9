// Where a per-entry finding sits, exactly: the table, the entry, the guest offset it maps. The
// repair planner and the app read these; the anomalies carry the same place as their referrer.
import { hex64 } from '../format/bytes.js';
import type { Referrer } from './types.js';
import type { CheckedSnapshot } from './snapshot-table.js';

/** Where a per-entry finding sits, exactly, for the repair planner and the app. */
export interface EntryFinding {
  /** Same names as the anomaly kinds (see ANOMALY_KINDS). */
  kind: string;
  /** Which table holds the entry: 'l1', 'l2', 'snapshot-l1', 'snapshot-l2', 'reftable', 'snapshot-table', ... */
  table?: string;
  /** Host offset of that table. */
  tableOffset?: number;
  /** Index of the entry in the table (L1 index, L2 index, reftable index, snapshot index). */
  index?: number;
  /** The entry's 64-bit value in hex (no 0x), as QEMU prints it. */
  entry?: string;
  /** Guest offset the entry maps (active L2 entries; snapshot L2 entries map the snapshot's view). */
  guestOffset?: number;
  /** Snapshot id when the entry is reached from a snapshot's L1. */
  snapshotId?: string;
  /** Host byte range concerned (data offset, region past EOF, ...). */
  offset?: number;
  size?: number;
  /** On-disk refcount involved (COPIED findings). */
  refcount?: number;
}

/** The anomaly's referrer for a finding: the table (by kind and offset), the entry, the guest offset. */
export function referrerOf(w: EntryFinding): Referrer {
  const r: Referrer = { kind: w.table ?? w.kind };
  if (w.tableOffset !== undefined) r.table = w.tableOffset;
  if (w.index !== undefined) r.index = w.index;
  if (w.guestOffset !== undefined) r.guestOffset = w.guestOffset;
  if (w.snapshotId !== undefined) r.snapshotId = w.snapshotId;
  return r;
}

/** The place of L2 entry `index` of the table at `l2Offset`, reached from L1 slot `l1Index`. */
export function l2EntryWhere(
  entry: { hi: number; lo: number },
  index: number,
  l2Offset: number,
  l1Index: number,
  layer: { active: boolean; snapshot: CheckedSnapshot | undefined; l2Entries: number; clusterSize: number },
): EntryFinding {
  const f: EntryFinding = {
    kind: '',
    table: layer.active ? 'l2' : 'snapshot-l2',
    tableOffset: l2Offset,
    index,
    entry: hex64(entry.hi, entry.lo),
    guestOffset: (l1Index * layer.l2Entries + index) * layer.clusterSize,
  };
  if (layer.snapshot) f.snapshotId = layer.snapshot.id;
  return f;
}
