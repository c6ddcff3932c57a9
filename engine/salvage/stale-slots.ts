// A live L2 table referenced by no L1 that shares data clusters with the table an active L1 slot
// names, entry for entry at the same index, is a copy-on-write copy of that table: QEMU copies an
// L2 table whole when a snapshot shares it and the disk writes under it. The slot then names the
// older table (an L1 overwritten with a snapshot's L1 does exactly that), and the disk's newer data
// for the entries the copy changed is in the copy: those guest clusters are named possibly lost and
// written as zeros, since what the slot's table holds there is the snapshot's older content.
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import type { ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';

/** The data cluster an entry maps, or 0 (compressed, zero, unallocated). */
function dataAt(st: ReconstructState, buf: Uint8Array, j: number): number {
  const hi = u32(buf, j * st.step);
  const lo = u32(buf, j * st.step + 4);
  return classifyL2(hi, lo, st.extendedL2, false) === ClusterType.Normal ? l2Offset(hi, lo) : 0;
}

/** Set `active.stale`: per placed L1 slot, the entries a copy-on-write copy among `orphans` changed. */
export async function markStaleSlots(st: ReconstructState, active: GuestView, orphans: number[]): Promise<void> {
  const stale = new Map<number, Set<number>>();
  for (const [slot, p] of active.l2) {
    const mine = await st.cache.get(p.host);
    for (const o of orphans) {
      if (o === p.host) continue;
      const copy = await st.cache.get(o);
      let same = 0;
      const changed: number[] = [];
      for (let j = 0; j < st.l2Entries; j++) {
        const a = dataAt(st, mine, j);
        const b = dataAt(st, copy, j);
        if (a !== 0 && a === b) same++;
        else if (b !== 0) changed.push(j);
      }
      if (!same || !changed.length) continue;
      const set = stale.get(slot) ?? new Set<number>();
      for (const j of changed) set.add(j);
      stale.set(slot, set);
    }
  }
  if (stale.size) active.stale = stale;
}
