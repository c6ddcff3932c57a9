// QEMU's calculate_refcounts: count every reference the metadata makes, in QEMU's order (header,
// active L1 and its L2 tables, snapshots' L1 and L2 tables, snapshot table, refcount table,
// encryption header, bitmaps, refcount blocks), so the messages come out in QEMU's order too.
import { HostRole } from '../contract/roles.js';
import { checkRefblocks } from './refblocks-pass.js';
import type { CheckState } from './state.js';
import { walkBitmaps } from './walk-bitmaps.js';
import { checkL1 } from './walk-l1.js';
import { walkSnapshotLayers } from './walk-snapshots.js';

export async function calculateRefcounts(state: CheckState): Promise<void> {
  const h = state.image.header;
  const cs = state.clusterSize;
  // 1. header
  state.incRange(0, cs, HostRole.Header, { kind: 'header', table: 'header' });
  state.claimMeta(0, cs, HostRole.Header, 'header');
  // 2. active L1
  await checkL1(state, h.l1TableOffset, h.l1Size, true, undefined);
  // 3. snapshots
  await walkSnapshotLayers(state);
  // 4. snapshot table
  state.incRange(h.snapshotsOffset, state.snapshotTableSize, HostRole.SnapshotTable, {
    kind: 'snapshot-table',
    table: 'header',
  });
  state.claimMeta(h.snapshotsOffset, state.snapshotTableSize, HostRole.SnapshotTable, 'snapshot table');
  // 5. refcount table
  const rtBytes = h.refcountTableClusters * cs;
  state.incRange(h.refcountTableOffset, rtBytes, HostRole.RefcountTable, { kind: 'reftable', table: 'header' });
  state.claimMeta(h.refcountTableOffset, rtBytes, HostRole.RefcountTable, 'refcount table');
  // 6. encryption header
  if (h.crypto?.length) {
    state.incRange(h.crypto.offset, h.crypto.length, HostRole.CryptoHeader, {
      kind: 'crypto-header',
      table: 'header',
    });
    state.claimMeta(h.crypto.offset, h.crypto.length, HostRole.CryptoHeader, 'encryption header');
  }
  // 7. bitmaps
  await walkBitmaps(state);
  // 8. refcount blocks
  checkRefblocks(state);
}
