// QEMU's calculate_refcounts: count every reference the metadata makes, in QEMU's order (header,
// active L1 and its L2 tables, snapshots' L1 and L2 tables, snapshot table, refcount table,
// encryption header, bitmaps, refcount blocks), so the messages come out in QEMU's order too. The
// image's one traversal walks the metadata in that order (`asQemuCheck`) and reads the tables; the
// checker counts what it hands over: references one by one, L2 tables whole (walk-l2.ts).
import { HostRole } from '../contract/roles.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { Reference, TraversalVisitor } from '../image/traversal/index.js';
import { checkRefblocks } from './refblocks-pass.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import { BATCH_BYTES, type CheckState } from './state.js';
import { BitmapCounting } from './walk-bitmaps.js';
import { countL1Entry, countL1Table, walkL2Table } from './walk-l1.js';
import { snapshotL1Reference, snapshotLayers } from './walk-snapshots.js';

export async function calculateRefcounts(state: CheckState): Promise<void> {
  const bitmaps = new BitmapCounting(state);
  // The layer being walked: undefined for the active one, else its snapshot (layers come one by one).
  let snapshot: CheckedSnapshot | undefined;
  let snapshotsSeen = 0;
  let stage = 'active L2 tables';
  const reference = (r: Reference): boolean => {
    switch (r.target) {
      case 'l2':
        countL1Entry(state, r, snapshot);
        return true;
      case 'l1':
        snapshot = undefined;
        countL1Table(state, r, undefined);
        return true;
      case 'snapshot-l1': {
        snapshot = state.snapshots[snapshotsSeen++]!;
        stage = 'snapshot L2 tables';
        return snapshotL1Reference(state, r, snapshot, snapshotsSeen === 1);
      }
      case 'refcount-table':
        countHeaderField(state, r, HostRole.RefcountTable, 'reftable', 'refcount table');
        return false; // its entries are QEMU's check_refblocks (refblocks-pass.ts)
      case 'header':
        countHeaderField(state, r, HostRole.Header, 'header', 'header');
        return true;
      case 'snapshot-table':
        countHeaderField(state, r, HostRole.SnapshotTable, 'snapshot-table', 'snapshot table');
        return true;
      case 'crypto-header':
        countHeaderField(state, r, HostRole.CryptoHeader, 'crypto-header', 'encryption header');
        return true;
      default:
        bitmaps.reference(r);
        return true;
    }
  };
  const visitor: TraversalVisitor = {
    reference,
    table: (t, bytes) => {
      if (t.kind === 'l2') walkL2Table(state, t, bytes, snapshot);
      else if (t.kind === 'bitmap-table') bitmaps.table(t, bytes);
    },
    batchDone: (_kind, tables) => state.work(tables, stage),
    bitmapTableEnd: (t, bytes) => bitmaps.tableEnd(t, bytes),
  };
  await traverse(sourceOf(state.image), visitor, {
    asQemuCheck: true,
    snapshots: { layers: snapshotLayers(state), tableBytes: state.snapshotTableSize },
    buffers: state.pools,
    batchBytes: BATCH_BYTES,
    yieldTurns: state.listened,
    ...(state.opts.cancel ? { cancel: state.opts.cancel } : {}),
  });
  checkRefblocks(state);
}

/** A structure the header points at directly: counted, and claimed as metadata. */
function countHeaderField(state: CheckState, r: Reference, role: number, kind: string, what: string): void {
  state.incRange(r.offset, r.length, role, { kind, table: 'header' });
  state.claimMeta(r.offset, r.length, role, what);
}
