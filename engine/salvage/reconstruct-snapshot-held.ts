// The active disk's L2 tables that only a snapshot still points at: the active L1 entry was lost
// (zeroed) while the table's refcount still counts the active disk's share. The snapshot's L1 says
// at which slot the table sits (tables never move between slots), so the active disk gets it back
// there — read from surviving metadata, not guessed.
import type { ActiveL1 } from './l1-tables.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';
import { lostByIndex } from './lost-index.js';

export async function adoptSnapshotHeldTables(
  st: ReconstructState,
  active: ActiveL1,
  activeView: GuestView,
  snapViews: GuestView[],
): Promise<void> {
  if (!st.probe || !snapViews.length) return;
  // How many L1 tables we know point at each L2 table.
  const pointers = new Map<number, number>();
  for (const v of [activeView, ...snapViews])
    for (const p of v.l2.values()) pointers.set(p.host, (pointers.get(p.host) ?? 0) + 1);
  const adopted: string[] = [];
  for (const v of snapViews)
    for (const [i, p] of v.l2) {
      if (i >= active.size || activeView.l2.has(i) || lostByIndex(activeView.lostL2).has(i)) continue;
      if (p.confidence < 1 || p.source !== 'l1') continue;
      const rc = await st.probe.refcount(p.host / st.cs);
      if (rc === undefined || rc <= pointers.get(p.host)!) continue;
      activeView.l2.set(i, {
        l1Index: i,
        host: p.host,
        source: 'snapshot-match',
        confidence: 1,
        evidence: `snapshot ${v.id}'s L1 holds it at slot ${i} and its refcount counts the active disk's share`,
      });
      pointers.set(p.host, pointers.get(p.host)! + 1);
      adopted.push(`${hx(p.host)} at slot ${i}`);
    }
  if (adopted.length)
    st.warnings.push(
      `the active L1 table had lost ${adopted.length} entr${adopted.length === 1 ? 'y' : 'ies'} whose L2 tables a snapshot still holds, with the active share still counted: re-linked from the snapshot's L1 (${adopted.slice(0, 8).join(', ')}${adopted.length > 8 ? ', …' : ''})`,
    );
}
