// The snapshot table: QEMU's pre-check of it (qcow2_check_read_snapshot_table, before the walk) and,
// in calculate_refcounts, each snapshot's L1 table after the checks QEMU makes on its entry.
import * as C from '../format/constants.js';
import { readPadded } from '../io/positional-io.js';
import { msg } from './messages.js';
import { precheckSnapshotTable } from './snapshot-table.js';
import { CheckAbort, type CheckState } from './state.js';
import { checkL1 } from './walk-l1.js';

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

/** calculate_refcounts' step 3: every snapshot's L1 table, after the checks of its entry. */
export async function walkSnapshotLayers(state: CheckState): Promise<void> {
  if (state.dataFile && state.snapshots.length) {
    const line = msg.snapshotsWithDataFile(state.snapshots.length);
    state.say(line);
    state.counters.corruptions++;
    state.find({ kind: 'snapshots-with-data-file' });
    state.anomalies.add('snapshots-with-data-file', { qemuMessage: line });
  }
  for (const sn of state.snapshots) {
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
      continue;
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
      continue;
    }
    if (sn.diskSize !== undefined && sn.diskSize !== state.image.virtualSize)
      state.anomalies.add('snapshot-disk-size', { referrer });
    await checkL1(state, sn.l1TableOffset, sn.l1Size, false, sn);
  }
}
