/**
 * The refcount comparison's message lines and counters, in QEMU's wording. After a rebuild every
 * mismatch QEMU's first pass saw is gone (its counters count them all); in place, the ones we change.
 */
import type { CountsView } from './cluster-counts.js';
import type { PlanContext } from './plan-context.js';
import { onDiskCount } from './target-refcounts.js';

export function noteRefcountChanges(ctx: PlanContext, rebuild: boolean, target: CountsView, final: CountsView): void {
  const w = ctx.walk;
  const onDisk = onDiskCount(w);
  for (const c of w.mismatched) {
    if (c >= w.refs.length) break;
    const d = onDisk(c);
    const r = w.refs[c] ?? 0;
    if (w.onDiskUnknown[c] || d === r) continue;
    const after = rebuild ? (final.at(c) ?? 0) : target.at(c)!;
    if (!rebuild && after === d) continue;
    const leak = d > r;
    if (c >= w.hostClusters && r === 0) {
      // QEMU never looks at refcounts past the end of the file (its S28 gap): fixed, not counted.
      if (after !== d)
        ctx.fixes.push({
          kind: 'refcount-beyond-eof',
          counts: 'none',
          differsFromQemu: true,
          text: `cluster ${c} lies past the end of the file but had refcount ${d}; set to ${after} (QEMU does not check this)`,
        });
      continue;
    }
    if (!rebuild || d !== 0 || r === 0) {
      ctx.fixes.push({
        kind: leak ? 'leak' : 'refcount',
        counts: leak ? 'leak' : 'corruption',
        qemuLine: `Repairing cluster ${c} refcount=${d} reference=${r}`,
        text: `cluster ${c}: refcount ${d} → ${after} (${r} reference(s))`,
      });
    } else {
      ctx.fixes.push({
        kind: 'refcount',
        counts: 'corruption',
        text: `cluster ${c}: refcount 0 → ${after} (${r} reference(s)) in the rebuilt structure`,
      });
    }
    if (leak) ctx.leaksFixed++;
    else ctx.corruptionsFixed++;
  }
}
