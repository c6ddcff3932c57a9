/**
 * A data cluster that guest offsets in different places map, with a refcount too low for them all,
 * belongs to one of them at most: the others read another range's data (a flipped bit or a copied
 * entry made them point there). The cross-link copy (cross-links.ts) gives each its own cluster, but
 * the bytes in it are still the other range's, so those guest ranges are named lost. The owner is the
 * one active entry that carries OFLAG_COPIED (QEMU sets it exactly on clusters with refcount 1, and a
 * damaged entry pointing elsewhere rarely has it); when the entries cannot tell, every range is named.
 */
import { u32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { readPadded } from '../io/positional-io.js';
import { nameLostClusters } from './guest-ranges.js';
import type { PlanContext } from './plan-context.js';
import type { Ref } from './references.js';

const isDataRef = (r: Ref): boolean => r.kind === 'l2' || r.kind === 'snap-l2';

export async function nameCrossLinkedRanges(ctx: PlanContext): Promise<void> {
  if (!ctx.all) return;
  const w = ctx.walk;
  const named = new Set<number>();
  let undecided = 0;
  for (const [c, list] of w.multi) {
    // Data onto metadata or an L2 table is named where it is copied (cross-links.ts).
    if (w.metadata.has(c) || list.some((r) => !isDataRef(r))) continue;
    const refsOnDisk = w.onDiskUnknown[c] ? 0 : w.onDisk[c]!;
    if (refsOnDisk >= w.refs[c]!) continue;
    const data = list.filter((r) => isDataRef(r) && !ctx.entryFix.has(r.entry));
    const groups = new Map<number, Ref[]>();
    for (const r of data) {
      const g = groups.get(r.guest);
      if (g) g.push(r);
      else groups.set(r.guest, [r]);
    }
    if (groups.size < 2) continue;
    const owners: number[] = [];
    for (const [g, refs] of groups)
      for (const r of refs)
        if (r.kind === 'l2' && (u32(await readPadded(ctx.io, r.entry, 8), 0) & C.OFLAG_COPIED_HI) !== 0) {
          owners.push(g);
          break;
        }
    const owner = refsOnDisk === 1 && owners.length === 1 ? owners[0] : undefined;
    if (owner === undefined) undecided++;
    for (const [g, refs] of groups) if (g !== owner && refs.some((r) => r.kind === 'l2')) named.add(g);
  }
  if (!named.size) return;
  const list = [...named];
  const ranges = nameLostClusters(ctx, list);
  ctx.fixes.push({
    kind: 'cross-linked-range-lost',
    counts: 'none',
    explain: true,
    text: `${list.length} guest cluster(s) map a data cluster another guest range owns (${ranges}): they read that range's data, not their own, and are named lost${undecided ? ` — for ${undecided} cluster(s) the entries cannot tell which range owns it, so every range that maps it is named (one of them may still read right)` : ''}`,
  });
}
