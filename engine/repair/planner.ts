/**
 * Make the repair plan (pure with respect to the image: reads only, writes nothing). Phase by phase:
 *
 *  0. trusted-view.ts      which claim to a cluster is true, from its content (evidence.ts,
 *                          l1-into-data.ts)
 *  1. entry-fixes.ts       entries with reserved bits, unaligned preallocated zero clusters, snapshot
 *                          entries; what would need a guess is refused and reported
 *     foreign-l2-tables.ts active L2 tables overwritten by another structure: their whole span is lost
 *  2. relinks.ts           damaged pointers to tables re-linked to the orphaned table still there
 *     swapped-l1-relinks.ts an active L1 entry on a snapshot's table: back to the active tree's share
 *     lost-table-relinks.ts  L2 tables no L1 entry points at: re-linked where certain, never freed
 *     orphaned-data.ts     leaked clusters that still hold data are kept; lost active shares named
 *  3. cross-links.ts       clusters shared against their refcount are copied
 *     cross-link-owners.ts the ranges that mapped another range's cluster are named lost
 *  4. snapshot-table-fix.ts  incomplete snapshot entries rewritten, stale bitmaps dropped
 *  5. allocation.ts        rebuild or not; clusters for the copies and the new snapshot table
 *  6. overlay-rewalk.ts    the fixes laid over the image, walked again: the final reference counts
 *  7. target-refcounts.ts  the refcount each cluster ends with (nothing protected is lowered)
 *  8. plan-writes.ts       the ordered writes, in place or as a rebuilt structure; COPIED from the
 *                          final counts; dirty and corrupt bits last
 */
import type { PositionalIO } from '../io/positional-io.js';
import { allocateClusters } from './allocation.js';
import { nameCrossLinkedRanges } from './cross-link-owners.js';
import { planCrossLinkCopies } from './cross-links.js';
import { planEntryFixes } from './entry-fixes.js';
import { planForeignL2Tables } from './foreign-l2-tables.js';
import { planLostL2Tables } from './lost-table-relinks.js';
import { rewalkWithFixes } from './overlay-rewalk.js';
import { planOrphanedData } from './orphaned-data.js';
import { newPlanContext, type PlanContext, type PlanOptions } from './plan-context.js';
import { planWrites } from './plan-writes.js';
import type { RepairPlan } from './plan.js';
import { planL1EntryRelinks, planLostL1Relink } from './relinks.js';
import { planSwappedL1Relinks } from './swapped-l1-relinks.js';
import { planSnapshotTable, planStaleBitmaps } from './snapshot-table-fix.js';
import { targetRefcounts } from './target-refcounts.js';
import { noteL1EntriesIntoData } from './l1-into-data.js';
import { noteMisplacedRefblocks, openTrusted } from './trusted-view.js';
import { planLostStreams, withLostStreams } from './lost-streams.js';
import { settleFreedData } from './unplaced-data.js';

export type { PlanOptions } from './plan-context.js';

export async function planRepair(io: PositionalIO, opts: PlanOptions): Promise<RepairPlan> {
  const originalLength = await io.size();
  const trusted = await openTrusted(io, originalLength, opts.mode === 'all');
  const ctx = newPlanContext(io, opts, originalLength, trusted.img, trusted.walk);
  noteMisplacedRefblocks(ctx, trusted.misplaced);
  noteL1EntriesIntoData(ctx, trusted.intoData);

  const { relinkNeeded, lostL1 } = await planEntryFixes(ctx);
  await planForeignL2Tables(ctx);
  await planL1EntryRelinks(ctx, relinkNeeded);
  await planLostL1Relink(ctx, lostL1);
  await planSwappedL1Relinks(ctx);
  await planLostL2Tables(ctx);
  await planOrphanedData(ctx);
  await planLostStreams(ctx);
  await nameCrossLinkedRanges(ctx);
  const copies = planCrossLinkCopies(ctx);
  const snapshotTable = planSnapshotTable(ctx);
  const headerExt = await planStaleBitmaps(ctx);
  const alloc = allocateClusters(ctx, copies, snapshotTable);

  // QEMU's -r leaks cannot rebuild: it stops before changing anything.
  // (A refcount block past the end of the file is no reason: QEMU's -r leaks just leaves it.)
  if (!ctx.all && (ctx.walk.refblocks.some((r) => r.status !== 'ok' && r.status !== 'beyond-eof') || alloc.rebuild))
    return failedPlan(ctx, 'need to rebuild refcount structures');

  const willBe = await rewalkWithFixes(ctx, alloc, headerExt);
  const targets = targetRefcounts(ctx, willBe.walk);
  const unplaced = withLostStreams(ctx, settleFreedData(ctx, targets.target));
  const plan = await planWrites(ctx, { alloc, targets, willBe, headerExt });
  return unplaced ? { ...plan, dataLostUnplaced: unplaced } : plan;
}

/** A plan that writes nothing because the repair cannot run in this mode (QEMU's wording in `failed`). */
function failedPlan(ctx: PlanContext, failed: string): RepairPlan {
  return {
    image: ctx.opts.name ?? ctx.img.io.name,
    mode: ctx.opts.mode,
    clusterSize: ctx.clusterSize,
    originalLength: ctx.originalLength,
    steps: [],
    fixes: ctx.fixes,
    refusals: ctx.refusals,
    rebuild: false,
    expected: { remainingCorruptions: 1, remainingLeaks: 0, fileLength: ctx.originalLength },
    leaksFixed: 0,
    corruptionsFixed: 0,
    guestRangesLost: [],
    failed,
  };
}
