/**
 * An active L1 entry that points at a snapshot's own L2 table instead of the active tree's (a
 * redirected entry, or the active L1 overwritten with a snapshot's L1): the table it points at is
 * referenced once more than its refcount allows, while a snapshot L1 holds another table at the same
 * slot whose refcount counts one more user than its references — the active tree's share, which the
 * damaged entry lost. When exactly one table at that slot carries such a share, the entry is
 * re-linked to it and every byte of the span is kept; when none or several do, the span reads a
 * snapshot's data and is named lost.
 */
import { addLostRange, describeRange } from './guest-ranges.js';
import { snapshotL1s } from './lost-l2-tables.js';
import { at, type PlanContext } from './plan-context.js';

export async function planSwappedL1Relinks(ctx: PlanContext): Promise<void> {
  const w = ctx.walk;
  if (!ctx.all || !w.snapshots.length) return;
  const cs = ctx.clusterSize;
  const count = (off: number): { refs: number; onDisk: number } | undefined => {
    const c = off / cs;
    return w.onDiskUnknown[c] ? undefined : { refs: w.refs[c] ?? 0, onDisk: w.onDisk[c] ?? 0 };
  };
  const over = w.activeL1.filter((e) => {
    const n = count(e.l2);
    return n !== undefined && n.refs > n.onDisk && !ctx.entryFix.has(e.entry);
  });
  if (!over.length) return;
  const { slots } = await snapshotL1s(ctx.img, w);
  for (const e of over) {
    // Only a snapshot's table at this very slot: the active entry holds a snapshot's version of the span.
    if (!(slots.get(e.l2) ?? []).includes(e.index)) continue;
    const shares: number[] = [];
    for (const [off, heldAt] of slots) {
      if (off === e.l2 || !heldAt.includes(e.index) || w.activeL2.has(off) || !w.allL2.has(off)) continue;
      const n = count(off);
      if (n !== undefined && n.onDisk > n.refs) shares.push(off);
    }
    const span = ctx.geo.l1Coverage;
    const start = e.index * span;
    if (shares.length === 1) {
      const to = shares[0]!;
      // Shared with the snapshot from now on: no COPIED flag (the final counts set it if right).
      ctx.entryFix.set(e.entry, {
        hi: Math.floor(to / 0x1_0000_0000) >>> 0,
        lo: to >>> 0,
        why: `active L1 table entry ${e.index}: re-link the L2 table at ${at(to)} the active tree shares with a snapshot`,
      });
      ctx.fixes.push({
        kind: 're-link-swapped-l2',
        counts: 'corruption',
        differsFromQemu: true,
        text: `active L1 table entry ${e.index} pointed at a snapshot's L2 table at ${at(e.l2)} (refcount ${count(e.l2)!.onDisk}, ${count(e.l2)!.refs} references), while the snapshot L2 table at ${at(to)} at the same slot counts one user more than its references: the active tree's share; re-linked there, every byte of the span is kept — QEMU would raise the first table's refcount and leave the active disk reading the snapshot's data`,
      });
      ctx.corruptionsFixed++;
      continue;
    }
    if (start >= ctx.header.size) continue;
    const range = { start, length: Math.min(span, ctx.header.size - start) };
    addLostRange(ctx, range.start, range.length);
    ctx.fixes.push({
      kind: 'swapped-l2-span-lost',
      counts: 'none',
      explain: true,
      text: `active L1 table entry ${e.index} points at a snapshot's L2 table at ${at(e.l2)} (refcount ${count(e.l2)!.onDisk}, ${count(e.l2)!.refs} references): guest ${describeRange(range)} reads that snapshot's data, and ${shares.length ? `${shares.length} snapshot tables could hold the active tree's own version` : 'no table holds the active tree’s own version'}, so the span is named lost — \`qcow2-doctor salvage\` may recover it`,
    });
  }
}
