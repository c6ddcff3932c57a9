// QEMU's check_refcounts_l1 for the active L1 table or a snapshot's, on the traversal (which reads
// the L2 tables in sorted batches and hands over each L1 entry's reference, then its table): count
// the table, then every L2 table an entry points to (QEMU's messages for bad entries, in QEMU's
// order), and walk each (walk-l2.ts).
import { HostRole } from '../contract/roles.js';
import * as C from '../format/constants.js';
import { hex64 } from '../format/bytes.js';
import type { Reference, TableRead } from '../image/traversal/index.js';
import { type EntryFinding, referrerOf } from './entry-finding.js';
import { msg } from './messages.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import type { CheckState } from './state.js';
import { checkL2 } from './walk-l2.js';

/** The reference to a layer's L1 table (`sn` undefined: the active one): counted as QEMU counts it. */
export function countL1Table(state: CheckState, r: Reference, sn: CheckedSnapshot | undefined): void {
  if (r.length === 0) return;
  const active = sn === undefined;
  const l1Role = active ? HostRole.L1 : HostRole.SnapshotL1;
  state.incRange(r.offset, r.length, l1Role, {
    kind: active ? 'l1' : 'snapshot-l1',
    table: active ? 'header' : 'snapshot-table',
    snapshotId: sn?.id,
  });
  state.claimMeta(r.offset, r.length, l1Role, active ? 'active L1 table' : 'snapshot L1 table');
}

/** One non-empty L1 entry (the traversal's reference to its L2 table): count the table, say what is wrong. */
export function countL1Entry(state: CheckState, r: Reference, sn: CheckedSnapshot | undefined): void {
  const { hi, lo, offset: l2Off } = r;
  const cs = state.clusterSize;
  const active = sn === undefined;
  const l2Role = active ? HostRole.L2 : HostRole.SnapshotL2;
  // The common entry takes the short way; the rest builds its referrer and says what is wrong.
  if (
    (hi & C.L1E_RESERVED_MASK_HI) !== 0 ||
    (lo & C.L1E_RESERVED_MASK_LO) !== 0 ||
    l2Off % cs !== 0 ||
    !state.fits(l2Off, cs)
  ) {
    const where: EntryFinding = {
      kind: '',
      table: active ? 'l1' : 'snapshot-l1',
      tableOffset: r.from.table!,
      index: r.from.index!,
      entry: hex64(hi, lo),
      snapshotId: sn?.id,
    };
    l1EntryChecks(state, hi, lo, l2Off, where, l2Role, active);
  } else {
    state.incSpan(l2Off, cs, l2Role);
    state.claimMeta(l2Off, cs, l2Role, active ? 'active L2 table' : 'snapshot L2 table');
  }
  if (active && l2Off !== 0) state.markCopied(Math.floor(l2Off / cs), (hi & C.OFLAG_COPIED_HI) !== 0);
}

/** The L2 table an L1 entry led to, as the traversal read it: QEMU's check_refcounts_l2. */
export function walkL2Table(state: CheckState, t: TableRead, bytes: Uint8Array, sn: CheckedSnapshot | undefined): void {
  const active = sn === undefined;
  checkL2(state, bytes, {
    l2Offset: t.offset,
    active,
    l1Index: t.index!,
    snapshot: sn,
    copiedCheck: active && t.offset !== 0,
  });
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
