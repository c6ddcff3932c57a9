// L2 tables whose cluster holds an L1 table's content (a snapshot's or the active one, copied over
// the table): every entry that is not empty points at an L2 table some disk reads through (only
// those: guest data that merely looks like a table proves nothing). Read as an L2 table, its
// empty entries would say "unallocated" and the range would silently read as zeros (or from the
// backing file), while what the real table mapped there is unknown. The table stays placed, so the
// entries other disks prove (shared-entries.ts) are still read back; every other empty entry is lost.
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';

export async function markL1CopyTables(st: ReconstructState, views: GuestView[]): Promise<void> {
  const l2Hosts = new Set<number>();
  for (const v of views) for (const p of v.l2.values()) l2Hosts.add(p.host);
  const verdict = new Map<number, boolean>();
  for (const v of views)
    for (const [i, p] of v.l2) {
      let copy = verdict.get(p.host);
      if (copy === undefined) {
        copy = pointsOnlyAtTables(st, await st.cache.get(p.host), p.host, l2Hosts);
        verdict.set(p.host, copy);
        if (copy)
          st.warnings.push(
            `the L2 table at ${hx(p.host)} holds an L1 table's content (its entries point at L2 tables): what it mapped is lost, except entries other disks prove`,
          );
      }
      if (!copy) continue;
      v.l1Copies ??= new Map();
      v.l1Copies.set(
        i,
        `the L2 table at ${hx(p.host)} holds an L1 table's content (its entries point at L2 tables): what this range held is unknown`,
      );
    }
}

/** Whether the table has entries and every one of them is a plain pointer at another L2 table. */
function pointsOnlyAtTables(st: ReconstructState, buf: Uint8Array, self: number, l2Hosts: Set<number>): boolean {
  let pointers = 0;
  for (let j = 0; j < st.l2Entries; j++) {
    let empty = true;
    for (let b = 0; b < st.step; b += 4) if (u32(buf, j * st.step + b) !== 0) empty = false;
    if (empty) continue;
    const hi = u32(buf, j * st.step);
    const lo = u32(buf, j * st.step + 4);
    const x = l2Offset(hi, lo);
    if (classifyL2(hi, lo, st.extendedL2, false) !== ClusterType.Normal || x === self || !l2Hosts.has(x)) return false;
    pointers++;
  }
  return pointers > 0;
}
