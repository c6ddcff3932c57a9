/**
 * Phase 5 of the plan: whether the refcount structure is rebuilt, and where the new clusters go
 * (copies of cross-linked clusters, a rewritten snapshot table). New clusters are taken only where
 * the walk sees no reference, the old structure counts zero, and nothing the plan protects lies.
 */
import type { ClusterCopy } from './cross-links.js';
import type { PlanContext } from './plan-context.js';
import { refblockOverlapsRefcountStructure } from './refblock-overlap.js';

export interface Allocation {
  rebuild: boolean;
  /** The copies with their new cluster (empty when no space was found). */
  copies: ClusterCopy[];
  /** The rewritten snapshot table (undefined when none, or no space was found). */
  snapshotTable: Uint8Array | undefined;
  /** First cluster of the rewritten snapshot table (-1 when none). */
  snapshotTableStart: number;
  /** Clusters this allocation took. */
  allocated: Set<number>;
  /** Refcount table entries per refcount group, from the original walk: groups with a usable block. */
  usableGroups: Set<number>;
}

/** Whether the walk alone says the refcount structure must be rebuilt. */
export function needsRebuild(ctx: PlanContext): boolean {
  const w = ctx.walk;
  const bad = w.refblocks.filter((r) => r.status !== 'ok');
  // The walk is authoritative, so a dirty (lazy-refcount) image is rebuilt only if its counts need it.
  if ((ctx.all ? bad.length > 0 : bad.some((r) => r.status !== 'beyond-eof')) || ctx.forceRebuild) return true;
  if (refblockOverlapsRefcountStructure(ctx)) return true;
  for (const c of w.mismatched) if (c < w.refs.length && w.refs[c]! > 0 && w.onDisk[c] === 0) return true;
  return false;
}

export function allocateClusters(
  ctx: PlanContext,
  copies: ClusterCopy[],
  snapshotTable: Uint8Array | undefined,
): Allocation {
  const w = ctx.walk;
  const cs = ctx.clusterSize;
  const entries = ctx.geo.refcountBlockEntries;
  const clusterCount = w.refs.length;
  const usableGroups = new Set(w.refblocks.filter((r) => r.status === 'ok').map((r) => r.index));
  const out: Allocation = {
    rebuild: needsRebuild(ctx),
    copies,
    snapshotTable,
    snapshotTableStart: -1,
    allocated: new Set(),
    usableGroups,
  };
  const freeForAlloc = (c: number, inPlace: boolean): boolean =>
    c >= 1 &&
    c < clusterCount &&
    w.refs[c] === 0 &&
    w.onDisk[c] === 0 &&
    !w.onDiskUnknown[c] &&
    !w.oldRefcountClusters.has(c) &&
    !w.metadata.has(c) &&
    !ctx.keep.has(c) &&
    !ctx.reserved.has(c) &&
    (!inPlace || usableGroups.has(Math.floor(c / entries)));
  const snapClusters = snapshotTable ? Math.ceil(snapshotTable.length / cs) : 0;
  const allocated = out.allocated;
  const allocate = (inPlace: boolean): boolean => {
    allocated.clear();
    const take = (): number => {
      for (let c = 1; c < clusterCount; c++)
        if (!allocated.has(c) && freeForAlloc(c, inPlace)) {
          allocated.add(c);
          return c;
        }
      return -1;
    };
    for (const cp of copies) if ((cp.to = take()) < 0) return false;
    if (!snapClusters) return true;
    let run = 0;
    for (let c = 1; c < clusterCount; c++) {
      run = !allocated.has(c) && freeForAlloc(c, inPlace) ? run + 1 : 0;
      if (run === snapClusters) {
        for (let k = c - run + 1; k <= c; k++) allocated.add(k);
        out.snapshotTableStart = c - run + 1;
        return true;
      }
    }
    return false;
  };
  if ((copies.length || snapClusters) && !allocate(!out.rebuild)) {
    if (!out.rebuild && allocate(false)) out.rebuild = true;
    else {
      ctx.refusals.push({
        kind: 'no-space',
        what: 'no free cluster for the copies / new snapshot table near the end of the file',
        decide: 'grow the file or run again after freeing leaks',
      });
      out.copies = [];
      out.snapshotTable = undefined;
    }
  }
  return out;
}
