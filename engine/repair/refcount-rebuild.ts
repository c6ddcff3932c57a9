/**
 * A rebuilt refcount structure: where it goes (only in clusters free in the old structure and in
 * both reference maps) and the writes that raise it before the header switches to it.
 */
import * as C from '../format/constants.js';
import { putU32, putU64 } from '../format/bytes.js';
import { setRefcount } from '../format/refcount.js';
import type { CountsView } from './cluster-counts.js';
import type { PlanBuilder } from './plan-builder.js';
import type { PlanContext } from './plan-context.js';

/** Refcounts of a plan: final ones, and those in force between the raise and lower phases. */
export interface RefcountStages {
  final: CountsView;
  inForce: CountsView;
  /** Refcount group → cluster of its new refcount block (rebuild only). */
  rebuiltBlocks: Map<number, number>;
}

/**
 * Rebuild: place the new structure, write its blocks and table (raise phase) and the header switch.
 * `target` counts the old structure's clusters too (both walks do); after the switch nothing
 * references them.
 */
export async function planRebuild(
  ctx: PlanContext,
  pb: PlanBuilder,
  target: CountsView,
  allocated: Set<number>,
): Promise<RefcountStages> {
  const { walk: w, header: h, clusterSize: cs, geo } = ctx;
  const entries = geo.refcountBlockEntries;
  const n = target.length;
  const oldContrib = new Float64Array(n);
  const rtFirst = Math.floor(h.refcountTableOffset / cs);
  for (let c = rtFirst; h.refcountTableClusters && c < rtFirst + h.refcountTableClusters; c++) oldContrib[c]!++;
  for (const rb of w.refblocks) if (rb.status === 'ok') oldContrib[rb.offset / cs]!++;
  const base = new Float64Array(n);
  const fin = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    fin[c] = Math.max(0, target.at(c)! - oldContrib[c]!);
    base[c] = Math.max(fin[c]!, Math.max(0, (w.refs[c] ?? 0) - oldContrib[c]!));
  }
  const isFree = (c: number): boolean => {
    if (c < 1) return false;
    if (w.oldRefcountClusters.has(c) || w.metadata.has(c) || ctx.keep.has(c) || ctx.reserved.has(c) || allocated.has(c))
      return false;
    if (c < n && (base[c] !== 0 || fin[c] !== 0)) return false;
    const unknown = c < w.onDiskUnknown.length && w.onDiskUnknown[c] === 1;
    // The old structure must agree the cluster is free; where it cannot be read, only past the end of file is known free.
    if (unknown) return c >= w.hostClusters;
    return c >= w.onDisk.length || w.onDisk[c] === 0;
  };
  const placed = placeRefcountStructure(base, isFree, entries, cs);
  const inForce = placed.counts;
  const total = inForce.length;
  const final = new Float64Array(total);
  for (let c = 0; c < total; c++) final[c] = (c < n ? fin[c]! : 0) + (placed.isStruct.has(c) ? 1 : 0);
  // raise: refblocks, then the table.
  for (const [g, c] of placed.refblocks) {
    const block = new Uint8Array(cs);
    for (let j = 0; j < entries && g * entries + j < total; j++)
      if (inForce[g * entries + j]) setRefcount(block, j, geo.refcountOrder, inForce[g * entries + j]!);
    await pb.write('raise', c * cs, block, 'refcount-block', `new refcount block ${g} (rebuilt structure)`);
  }
  const rt = new Uint8Array(placed.reftableClusters * cs);
  for (const [g, c] of placed.refblocks) putU64(rt, g * 8, c * cs);
  await pb.write(
    'raise',
    placed.reftableStart * cs,
    rt,
    'refcount-table',
    `new refcount table (${placed.reftableClusters} cluster(s))`,
  );
  const sw = new Uint8Array(12);
  putU64(sw, 0, placed.reftableStart * cs);
  putU32(sw, 8, placed.reftableClusters);
  await pb.write(
    'switch-reftable',
    C.HDR.refcountTableOffset,
    sw,
    'header',
    'switch to the rebuilt refcount table (12 bytes, one sector)',
  );
  ctx.fixes.push({
    kind: 'rebuild',
    counts: 'none',
    qemuLine: 'Rebuilding refcount structure',
    text: `refcount structure rebuilt: table at cluster ${placed.reftableStart}, ${placed.refblocks.size} block(s) in clusters ${[...placed.refblocks.values()].join(', ')} — all free in the old structure and in both reference maps`,
  });
  ctx.corruptionsFixed += w.refblocks.filter((r) => r.status !== 'ok').length;
  return { final, inForce, rebuiltBlocks: placed.refblocks };
}

/** Lower within the new refcount blocks (old references that are gone after the relink phase). */
export async function lowerRebuiltBlocks(ctx: PlanContext, pb: PlanBuilder, stages: RefcountStages): Promise<void> {
  const cs = ctx.clusterSize;
  const entries = ctx.geo.refcountBlockEntries;
  const final = stages.final;
  for (const [g, c] of stages.rebuiltBlocks) {
    const before = await pb.read(c * cs, cs);
    const after = new Uint8Array(cs);
    for (let j = 0; j < entries && g * entries + j < final.length; j++)
      if (final.at(g * entries + j)) setRefcount(after, j, ctx.geo.refcountOrder, final.at(g * entries + j)!);
    await pb.writeDiff('lower', c * cs, before, after, 'refcount-block', `lower refcounts in rebuilt block ${g}`);
  }
}

/**
 * Place a rebuilt refcount structure: one refblock per group of clusters with a non-zero count and a
 * contiguous refcount table, each in the first cluster `isFree` allows; the structure counts itself
 * (repeat until it stops growing). Returns the counts including the new structure.
 */
export function placeRefcountStructure(
  base: Float64Array,
  isFree: (c: number) => boolean,
  entriesPerBlock: number,
  cs: number,
): {
  counts: Float64Array;
  refblocks: Map<number, number>;
  reftableStart: number;
  reftableClusters: number;
  isStruct: Set<number>;
} {
  let counts = base.slice();
  const isStruct = new Set<number>();
  const refblocks = new Map<number, number>();
  let rtStart = -1;
  let rtClusters = 0;
  const ensure = (c: number): void => {
    if (c < counts.length) return;
    const next = new Float64Array(Math.max(c + 1, counts.length * 2));
    next.set(counts);
    counts = next;
  };
  const usable = (c: number): boolean => !isStruct.has(c) && (c >= counts.length || counts[c] === 0) && isFree(c);
  // First fit with a cursor that only moves forward (clusters before it were all taken or not free).
  let cursor = 1;
  const alloc1 = (): number => {
    while (!usable(cursor)) cursor++;
    const c = cursor;
    ensure(c);
    counts[c] = 1;
    isStruct.add(c);
    return c;
  };
  for (let iter = 0; iter < 64; iter++) {
    let changed = false;
    let top = counts.length - 1;
    while (top > 0 && counts[top] === 0) top--;
    for (let g = 0; g * entriesPerBlock <= top; g++) {
      if (refblocks.has(g)) continue;
      let any = false;
      for (let c = g * entriesPerBlock; c < Math.min(counts.length, (g + 1) * entriesPerBlock); c++)
        if (counts[c] !== 0) {
          any = true;
          break;
        }
      if (!any) continue;
      refblocks.set(g, alloc1());
      changed = true;
    }
    let groups = 0;
    for (const g of refblocks.keys()) groups = Math.max(groups, g + 1);
    if (Math.ceil((groups * 8) / cs) > rtClusters) {
      // Room for half as many groups again, so the clusters the table and its blocks add do not
      // force yet another, larger table (which could otherwise chase itself past the end).
      const need = Math.ceil(((Math.ceil(groups * 1.5) + 1) * 8) / cs);
      for (let k = 0; k < rtClusters; k++) {
        counts[rtStart + k] = 0;
        isStruct.delete(rtStart + k);
      }
      let c = cursor;
      for (;;) {
        let ok = true;
        for (let k = 0; k < need; k++)
          if (!usable(c + k)) {
            ok = false;
            c = c + k + 1;
            break;
          }
        if (ok) break;
      }
      rtStart = c;
      rtClusters = need;
      ensure(c + need - 1);
      for (let k = 0; k < need; k++) {
        counts[c + k] = 1;
        isStruct.add(c + k);
      }
      changed = true;
    }
    if (!changed) return { counts, refblocks, reftableStart: rtStart, reftableClusters: rtClusters, isStruct };
  }
  throw new Error('refcount structure placement did not converge');
}
