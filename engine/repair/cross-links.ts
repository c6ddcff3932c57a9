/**
 * Phase 3 of the plan: cross-links. A cluster referenced by more referrers than its refcount allows,
 * or guest data mapped onto a metadata cluster, is copied so each referrer keeps its own data (QEMU
 * would raise the refcount and silently share it). An L2 table shared by two L1 slots is copied too,
 * and the spans of both are named lost: only one of them can be the table's own.
 */
import { addLostRange } from './guest-ranges.js';
import { at, type PlanContext } from './plan-context.js';
import type { Ref } from './references.js';

/** One cross-linked cluster copied for a group of referrers. */
export interface ClusterCopy {
  kind: 'data' | 'l2';
  from: number;
  /** The new cluster (set by the allocation phase; -1 until then). */
  to: number;
  entries: number[];
  why: string;
  /** The bytes written to the new cluster (an L2 copy has its COPIED flags cleared: its data is now shared). */
  content?: Uint8Array;
}

const isDataRef = (r: Ref): boolean => r.kind === 'l2' || r.kind === 'snap-l2';

export function planCrossLinkCopies(ctx: PlanContext): ClusterCopy[] {
  const copies: ClusterCopy[] = [];
  if (!ctx.all) return copies;
  const w = ctx.walk;
  const seen = new Set<number>();
  const consider = (c: number, list: Ref[]): void => {
    if (seen.has(c)) return;
    seen.add(c);
    const data = list.filter(isDataRef).filter((r) => !ctx.entryFix.has(r.entry));
    const l1s = list.filter((r) => !isDataRef(r)).filter((r) => !ctx.entryFix.has(r.entry));
    const meta = w.metadata.get(c);
    if (meta !== undefined || (l1s.length && data.length)) {
      // Guest data mapped onto a metadata cluster (or onto an L2 table): the data referrers get a copy.
      // A refcount block must then be replaced by a rebuilt structure rather than edited in place,
      // or the bytes the guest reads would change under the repair (and differ after a crash).
      if (meta === 'refcount block') ctx.forceRebuild = true;
      // The guest reads the table's bytes there, not what it wrote: that range of the disk is lost.
      for (const r of data) if (r.kind === 'l2') addLostRange(ctx, r.guest, ctx.clusterSize);
      // Each such entry's own data cluster, if nothing else maps it, is now leaked.
      ctx.pointersLost += data.length;
      for (const g of groupByGuest(data))
        copies.push({
          kind: 'data',
          from: c,
          to: -1,
          entries: g.map((r) => r.entry),
          why: `guest data at ${g.map((r) => at(r.guest)).join(', ')} shared cluster ${c} with the ${meta ?? 'L2 table'}`,
        });
      return;
    }
    const refsOnDisk = w.onDiskUnknown[c] ? 0 : w.onDisk[c]!;
    for (const [referrers, kind] of [
      [data, 'data'],
      [l1s, 'l2'],
    ] as const) {
      const groups = groupByGuest(referrers);
      if (groups.length < 2 || refsOnDisk >= w.refs[c]!) continue;
      // One L2 table under two L1 slots: each slot keeps a copy, but a table maps one span of the disk,
      // so at most one of them reads its own data — which one, the table cannot say: every span is named.
      if (kind === 'l2')
        for (const g of groups) {
          const start = g[0]!.guest;
          if (start < ctx.header.size) addLostRange(ctx, start, Math.min(ctx.geo.l1Coverage, ctx.header.size - start));
        }
      for (const g of groups.slice(1))
        copies.push({
          kind,
          from: c,
          to: -1,
          entries: g.map((r) => r.entry),
          why: `cluster ${c} was cross-linked: ${kind === 'data' ? 'guest offsets' : 'L1 ranges from'} ${groups.map((x) => at(x[0]!.guest)).join(' and ')} (refcount ${refsOnDisk}, ${w.refs[c]} references)`,
        });
    }
  };
  for (const [c, list] of w.multi) consider(c, list);
  for (const [c, r] of w.first) if (w.metadata.has(c) && isDataRef(r)) consider(c, [r]);
  return copies;
}

function groupByGuest(refs: Ref[]): Ref[][] {
  const m = new Map<number, Ref[]>();
  for (const r of refs) {
    const l = m.get(r.guest);
    if (l) l.push(r);
    else m.set(r.guest, [r]);
  }
  return [...m.values()];
}
