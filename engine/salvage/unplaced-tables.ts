// L2 tables no L1 entry references, left out because the active L1 looks intact, that the refcounts
// still count live and that map data no disk maps: the L1 entries that placed them were lost (QEMU
// only leaves a live L2 table unreferenced when it is empty, or a copy of a snapshot's table). Their
// data is not in the disk, and where it belonged is unknown: one of the free L1 slots.
import { dataHosts } from './l2-data-hosts.js';
import { markStaleSlots } from './stale-slots.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';

export async function markUnplacedTables(st: ReconstructState, views: GuestView[], active: GuestView): Promise<void> {
  const probe = st.probe;
  if (!probe || st.hints.dirty || !st.unusedL2.length) return;
  const mapped = new Set<number>();
  const seen = new Set<number>();
  for (const v of views)
    for (const p of v.l2.values()) {
      if (seen.has(p.host)) continue;
      seen.add(p.host);
      for (const x of dataHosts(st, await st.cache.get(p.host), { zeroAlloc: false })) mapped.add(x);
    }
  const tables: number[] = [];
  const own = new Set<number>();
  for (const o of st.unusedL2) {
    const rc = await probe.refcount(o / st.cs);
    if (!rc) continue;
    const mine = dataHosts(st, await st.cache.get(o), { zeroAlloc: false }).filter((x) => !mapped.has(x));
    if (!mine.length) continue;
    tables.push(o);
    for (const x of mine) own.add(x);
  }
  if (!tables.length) return;
  // A snapshot whose L1 is damaged, or missing from the table, may own them: not the active disk's loss.
  const snaps = views.filter((v) => v.kind === 'snapshot');
  const snapDamaged =
    snaps.some((v) => v.lostL2.length > 0 || v.l2.size === 0) ||
    (st.hints.nbSnapshots ?? 0) > snaps.filter((v) => v.l1Source === 'snapshot-table').length;
  if (snapDamaged) {
    st.warnings.push(
      `${tables.length} L2 table(s) referenced by no L1 (${tables.slice(0, 8).map(hx).join(', ')}${tables.length > 8 ? ', …' : ''}) are live by their refcount and map ${own.size} data cluster(s) no disk maps: they may belong to a snapshot whose L1 table is damaged or lost, or to the active disk (--place-orphans places them in the active disk by guess, --lost-found copies the data out)`,
    );
    return;
  }
  active.unplaced = { tables, bytes: own.size * st.cs };
  await markStaleSlots(st, active, tables);
  st.warnings.push(
    `${tables.length} L2 table(s) referenced by no L1 (${tables.slice(0, 8).map(hx).join(', ')}${tables.length > 8 ? ', …' : ''}) are live by their refcount and map ${own.size} data cluster(s) no disk maps: the L1 entries that placed them were lost, and where their data belongs is unknown (one of the free L1 slots, reported as possibly lost); --place-orphans places them by guess, --lost-found copies the data out`,
  );
}
