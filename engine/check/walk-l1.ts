// QEMU's check_refcounts_l1 for the active L1 table or a snapshot's: count the table, then every
// L2 table it points to (QEMU's messages for bad entries, in QEMU's order) and walk each. The L2
// tables are read in sorted batches, one batch read while the previous one is walked.
import { HostRole } from '../contract/roles.js';
import * as C from '../format/constants.js';
import { hex64, u32 } from '../format/bytes.js';
import { readPadded } from '../io/positional-io.js';
import { pipeline } from './batch-reader.js';
import { type EntryFinding, referrerOf } from './entry-finding.js';
import { msg } from './messages.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import { BATCH_BYTES, type CheckState, TWO32 } from './state.js';
import { checkL2 } from './walk-l2.js';

/** QEMU's check_refcounts_l1 (+ check_refcounts_l2 for every table), batched reads. */
export async function checkL1(
  state: CheckState,
  l1Offset: number,
  l1Size: number,
  active: boolean,
  sn: CheckedSnapshot | undefined,
): Promise<void> {
  if (l1Size === 0) return;
  const l1Bytes = l1Size * C.L1_ENTRY_SIZE;
  const l1Role = active ? HostRole.L1 : HostRole.SnapshotL1;
  state.incRange(l1Offset, l1Bytes, l1Role, {
    kind: active ? 'l1' : 'snapshot-l1',
    table: active ? 'header' : 'snapshot-table',
    snapshotId: sn?.id,
  });
  state.claimMeta(l1Offset, l1Bytes, l1Role, active ? 'active L1 table' : 'snapshot L1 table');
  const l1 = active
    ? state.image.l1
    : l1Offset >= state.fileSize
      ? new Uint8Array(l1Bytes)
      : await readPadded(state.image.io, l1Offset, l1Bytes);
  const tableName = active ? 'l1' : 'snapshot-l1';
  const l2Role = active ? HostRole.L2 : HostRole.SnapshotL2;
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / state.clusterSize));
  let i = 0;
  // Gather batches of L2 tables in L1 order; each is read sorted while the previous one is walked.
  const nextBatch = (): { batch: number[]; offsets: number[] } | undefined => {
    const batch: number[] = [];
    const offsets: number[] = [];
    for (; i < l1Size && batch.length < perBatch; i++) {
      const hi = u32(l1, 8 * i);
      const lo = u32(l1, 8 * i + 4);
      if (hi === 0 && lo === 0) continue;
      batch.push(i);
      offsets.push((hi & C.L1E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0));
    }
    return batch.length ? { batch, offsets } : undefined;
  };
  await pipeline(
    state.image.io,
    state.fileSize,
    state.clusterSize,
    state.zeros,
    state.pools,
    nextBatch,
    ({ batch, offsets }, tables) => {
      state.checkCancel();
      const cs = state.clusterSize;
      for (let b = 0; b < batch.length; b++) {
        const idx = batch[b]!;
        const hi = u32(l1, 8 * idx);
        const lo = u32(l1, 8 * idx + 4);
        const l2Off = offsets[b]!;
        // The common entry takes the short way; the rest builds its referrer and says what is wrong.
        if (
          (hi & C.L1E_RESERVED_MASK_HI) !== 0 ||
          (lo & C.L1E_RESERVED_MASK_LO) !== 0 ||
          l2Off % cs !== 0 ||
          !state.fits(l2Off, cs)
        ) {
          const where: EntryFinding = {
            kind: '',
            table: tableName,
            tableOffset: l1Offset,
            index: idx,
            entry: hex64(hi, lo),
            snapshotId: sn?.id,
          };
          l1EntryChecks(state, hi, lo, l2Off, where, l2Role, active);
        } else {
          state.incSpan(l2Off, cs, l2Role);
          state.claimMeta(l2Off, cs, l2Role, active ? 'active L2 table' : 'snapshot L2 table');
        }
        if (active && l2Off !== 0) state.markCopied(Math.floor(l2Off / cs), (hi & C.OFLAG_COPIED_HI) !== 0);
        checkL2(state, tables.get(l2Off)!, {
          l2Offset: l2Off,
          active,
          l1Index: idx,
          snapshot: sn,
          copiedCheck: active && l2Off !== 0,
        });
      }
      state.work(batch.length, active ? 'active L2 tables' : 'snapshot L2 tables');
    },
    state.listened,
  );
}

/** One L1 entry with something to report (reserved bits, unaligned or past end of file), in QEMU's order. */
function l1EntryChecks(
  state: CheckState,
  hi: number,
  lo: number,
  l2Off: number,
  where: EntryFinding,
  l2Role: number,
  active: boolean,
): void {
  if ((hi & C.L1E_RESERVED_MASK_HI) !== 0 || (lo & C.L1E_RESERVED_MASK_LO) !== 0) {
    const line = msg.l1Reserved(hex64(hi, lo));
    state.say(line);
    state.counters.corruptions++;
    state.find({ ...where, kind: 'l1-reserved-bits' });
    state.anomalies.add('l1-reserved-bits', { qemuMessage: line, referrer: referrerOf(where) });
    state.anomalies.cut();
  }
  state.incRange(l2Off, state.clusterSize, l2Role, where);
  state.claimMeta(l2Off, state.clusterSize, l2Role, active ? 'active L2 table' : 'snapshot L2 table');
  if (l2Off % state.clusterSize !== 0) {
    const line = msg.l2TableUnaligned(l2Off.toString(16));
    state.say(line);
    state.counters.corruptions++;
    state.find({ ...where, kind: 'l2-table-unaligned', offset: l2Off });
    state.anomalies.add('l2-table-unaligned', { qemuMessage: line, referrer: referrerOf(where) });
    state.anomalies.cut();
  }
}
