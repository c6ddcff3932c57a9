/**
 * A refcount table entry that points into the refcount table itself, or at a cluster another entry
 * already uses as its block, names no real refcount block: those bytes are refcounts of something
 * else (QEMU reports "refcount block N refcount=2" and rebuilds the structure under -r all). Editing
 * such a block in place would write one structure through another, so -r all rebuilds. No guest data
 * is at stake: a rebuild writes only new clusters and the header's refcount-table fields.
 */
import type { PlanContext } from './plan-context.js';

export function refblockOverlapsRefcountStructure(ctx: PlanContext): boolean {
  if (!ctx.all) return false;
  const { walk: w, header: h, clusterSize: cs } = ctx;
  const tableFirst = Math.floor(h.refcountTableOffset / cs);
  const tableEnd = tableFirst + h.refcountTableClusters;
  const blocks = new Set<number>();
  for (const rb of w.refblocks) {
    if (rb.status !== 'ok') continue;
    const c = rb.offset / cs;
    if ((c >= tableFirst && c < tableEnd) || blocks.has(c)) return true;
    blocks.add(c);
  }
  return false;
}
