// The snapshot table: QEMU's pre-check of it (qcow2_check_read_snapshot_table, before the walk) and,
// in calculate_refcounts, each snapshot's L1 table after the checks QEMU makes on its entry (the
// traversal walks the snapshots' layers; this decides which and counts their L1 tables).
import * as C from '../format/constants.js';
import type { Layer, Reference } from '../image/traversal/index.js';
import { readPadded } from '../io/positional-io.js';
import { msg } from './messages.js';
import { type CheckedSnapshot, precheckSnapshotTable } from './snapshot-table.js';
import { CheckAbort, type CheckState } from './state.js';
import { countL1Table } from './walk-l1.js';

/** QEMU's snapshot-table pre-check: its lines, counters, and the snapshots it keeps. */
export async function snapshotPrecheck(state: CheckState): Promise<void> {
  const img = state.image;
  const header = await readPadded(img.io, 0, 72);
  const p = await precheckSnapshotTable(img.io, state.fileSize, header, state.clusterSize, img.header.version);
  for (const l of p.lines) state.say(l.program ? `qemu-img: ${l.text}` : l.text);
  state.counters.corruptions += p.corruptions;
  state.counters.checkErrors += p.checkErrors;
  for (const s of p.snapshots) {
    if (s.extraDataSize < C.SNAPSHOT_EXTRA_V3_MIN && img.header.version >= 3) {
      state.find({
        kind: 'snapshot-incomplete',
        table: 'snapshot-table',
        tableOffset: s.entryOffset,
        index: s.index,
        snapshotId: s.id,
      });
      state.anomalies.add('snapshot-incomplete', {
        qemuMessage: msg.snapshotIncomplete(s.index),
        referrer: { kind: 'snapshot-table', index: s.index, snapshotId: s.id },
      });
      state.anomalies.cut();
    }
  }
  if (p.failed) throw new CheckAbort(p.failed);
  state.snapshots = p.snapshots;
  state.snapshotTableSize = p.tableSize;
}

/** The layers the traversal walks after the active one: every snapshot the pre-check kept, in order. */
export function snapshotLayers(state: CheckState): Layer[] {
  return state.snapshots.map((sn) => ({
    l1Offset: sn.l1TableOffset,
    l1Size: sn.l1Size,
    snapshotId: sn.id,
    snapshotIndex: sn.index,
    entryOffset: sn.entryOffset,
  }));
}

/**
 * calculate_refcounts' step 3 for snapshot `sn`, whose L1 table the traversal reaches through `r`:
 * the checks of its entry, then the table counted. Returns whether its L1 table is walked.
 */
export function snapshotL1Reference(state: CheckState, r: Reference, sn: CheckedSnapshot, first: boolean): boolean {
  if (first && state.dataFile) {
    const line = msg.snapshotsWithDataFile(state.snapshots.length);
    state.say(line);
    state.counters.corruptions++;
    state.find({ kind: 'snapshots-with-data-file' });
    state.anomalies.add('snapshots-with-data-file', { qemuMessage: line });
  }
  const referrer = { kind: 'snapshot-table', index: sn.index, snapshotId: sn.id };
  if (sn.l1TableOffset % state.clusterSize !== 0) {
    const line = msg.snapshotL1Unaligned(sn.id, sn.name, sn.l1TableOffset.toString(16));
    state.say(line);
    state.counters.corruptions++;
    state.find({
      kind: 'snapshot-l1-unaligned',
      table: 'snapshot-table',
      tableOffset: sn.entryOffset,
      index: sn.index,
      snapshotId: sn.id,
      offset: sn.l1TableOffset,
    });
    state.anomalies.add('snapshot-l1-unaligned', { qemuMessage: line, referrer });
    state.anomalies.cut();
    return false;
  }
  if (sn.l1Size > C.QCOW_MAX_L1_SIZE / C.L1_ENTRY_SIZE) {
    const line = msg.snapshotL1TooLarge(sn.id, sn.name, sn.l1Size);
    state.say(line);
    state.counters.corruptions++;
    state.find({
      kind: 'snapshot-l1-too-large',
      table: 'snapshot-table',
      tableOffset: sn.entryOffset,
      index: sn.index,
      snapshotId: sn.id,
      size: sn.l1Size,
    });
    state.anomalies.add('snapshot-l1-too-large', { qemuMessage: line, referrer });
    state.anomalies.cut();
    return false;
  }
  if (sn.diskSize !== undefined && sn.diskSize !== state.image.virtualSize)
    state.anomalies.add('snapshot-disk-size', { referrer });
  countL1Table(state, r, sn);
  return true;
}
