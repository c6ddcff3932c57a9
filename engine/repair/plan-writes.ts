/**
 * Phase 8 of the plan: the ordered writes. Corrupt bit first (structural rewrites), COPIED cleared,
 * refcounts raised (or a rebuilt structure switched to), copies and the new snapshot table written,
 * pointers re-linked, refcounts lowered, COPIED set, dirty and corrupt bits cleared last.
 */
import * as C from '../format/constants.js';
import { putU64 } from '../format/bytes.js';
import { setRefcount } from '../format/refcount.js';
import type { Allocation } from './allocation.js';
import type { ClusterCounts, CountsOverlay, CountsView } from './cluster-counts.js';
import { planCopied } from './copied-flags.js';
import { mergedRanges } from './guest-ranges.js';
import type { ImageAsItWillBe } from './overlay-rewalk.js';
import { PlanBuilder } from './plan-builder.js';
import { entryBytes, type PlanContext } from './plan-context.js';
import { lowerRebuiltBlocks, planRebuild, type RefcountStages } from './refcount-rebuild.js';
import { noteRefcountChanges } from './refcount-notes.js';
import type { RepairPlan } from './plan.js';
import type { RefWalk } from './references.js';
import type { TargetRefcounts } from './target-refcounts.js';

export interface WriteInputs {
  alloc: Allocation;
  targets: TargetRefcounts;
  willBe: ImageAsItWillBe;
  headerExt: { offset: number; bytes: Uint8Array } | undefined;
}

const headerWord = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  putU64(b, 0, v);
  return b;
};

export async function planWrites(ctx: PlanContext, x: WriteInputs): Promise<RepairPlan> {
  const { walk: w, header: h, clusterSize: cs } = ctx;
  const { alloc, targets, willBe } = x;
  const rebuild = alloc.rebuild;
  const target = targets.target;
  const pb = new PlanBuilder(ctx.io, ctx.originalLength);
  const v3 = h.version === 3;
  const expectClean =
    ctx.refusals.length === 0 &&
    (ctx.all ||
      (w.bad.length === 0 &&
        !hasLowRefcounts(w) &&
        w.incompleteSnapshots.length === 0 &&
        w.oversizeSnapshots.length === 0));
  const structural =
    rebuild ||
    ctx.entryFix.size > 0 ||
    alloc.copies.length > 0 ||
    alloc.snapshotTable !== undefined ||
    ctx.headerFixes.length > 0;
  let incompat = h.incompatibleFeatures;
  if (structural && v3 && expectClean && (incompat & C.INCOMPAT_CORRUPT) === 0n) {
    incompat |= C.INCOMPAT_CORRUPT;
    await pb.write(
      'mark-corrupt',
      C.HDR.incompatibleFeatures,
      headerWord(incompat),
      'header',
      'set the corrupt bit while the structure is rewritten (cleared last, after the re-check)',
    );
  }

  let stages: RefcountStages;
  if (!rebuild) {
    stages = { final: target, inForce: countsInForce(target, w.onDisk, targets.changed), rebuiltBlocks: new Map() };
  } else stages = await planRebuild(ctx, pb, target, alloc.allocated);
  const { final, inForce } = stages;

  // COPIED flags from the final counts, on the final tables. The scan reads every active L2 table
  // again; it can only find something when the image is re-pointed, the checker saw a COPIED
  // problem, or some refcount crosses 1.
  const anomalies = ctx.opts.anomalies;
  let copiedScan =
    willBe.repointed ||
    anomalies === undefined ||
    anomalies.some((a) => a.kind === 'copied-l1' || a.kind === 'copied-l2');
  if (!copiedScan)
    copiedScan = crossesOne(final, w.onDisk, willBe.walk.refs, final === target ? targets.changed : undefined);
  const copied = copiedScan
    ? await planCopied(
        willBe.img,
        willBe.walk,
        final,
        inForce,
        ctx.entryFix,
        ctx.all || expectClean,
        !targets.protectAll,
      )
    : { clear: [], set: [], relinkValue: new Map(), notes: [] };

  noteRefcountChanges(ctx, rebuild, target, final);

  // Phase by phase.
  for (const e of copied.clear) await pb.write('clear-copied', e.entry, entryBytes(e.hi, e.lo), e.structure, e.why);
  if (!rebuild) await refcountBlockChanges(ctx, pb, 'raise', targets.changed, w.onDisk, inForce);
  for (const cp of alloc.copies)
    await pb.write(
      'data',
      cp.to * cs,
      cp.content!,
      cp.kind === 'l2' ? 'l2-table' : 'data-copy',
      `copy of cluster ${cp.from} (${cp.why})`,
    );
  if (alloc.snapshotTable) {
    const padded = new Uint8Array(Math.ceil(alloc.snapshotTable.length / cs) * cs);
    padded.set(alloc.snapshotTable);
    await pb.write(
      'data',
      alloc.snapshotTableStart * cs,
      padded,
      'snapshot-table',
      'rewritten snapshot table with complete entries',
    );
  }
  await relinkWrites(ctx, pb, copied.relinkValue, x);
  if (!rebuild) await refcountBlockChanges(ctx, pb, 'lower', targets.changed, inForce, final);
  else await lowerRebuiltBlocks(ctx, pb, stages);
  for (const e of copied.set) await pb.write('set-copied', e.entry, entryBytes(e.hi, e.lo), e.structure, e.why);
  for (const l of copied.notes) {
    ctx.fixes.push(l);
    ctx.corruptionsFixed++;
  }
  if (v3 && expectClean && (incompat & (C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT)) !== 0n) {
    const bits = [
      incompat & C.INCOMPAT_DIRTY ? 'the dirty bit' : '',
      incompat & C.INCOMPAT_CORRUPT ? 'the corrupt bit' : '',
    ].filter(Boolean);
    await pb.write(
      'header',
      C.HDR.incompatibleFeatures,
      headerWord(incompat & ~(C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT)),
      'header',
      `clear ${bits.join(' and ')} (last)`,
    );
  }

  return {
    image: ctx.opts.name ?? ctx.io.name,
    mode: ctx.opts.mode,
    clusterSize: cs,
    originalLength: ctx.originalLength,
    steps: pb.steps_(),
    fixes: ctx.fixes,
    refusals: ctx.refusals,
    rebuild,
    expected: {
      remainingCorruptions: ctx.refusals.length + (ctx.all ? 0 : countLow(w, target)),
      remainingLeaks: targets.keptLeaks,
      fileLength: await pb.finalLength(),
    },
    leaksFixed: ctx.leaksFixed,
    corruptionsFixed: ctx.corruptionsFixed,
    guestRangesLost: mergedRanges(ctx.guestRangesLost),
  };
}

/** The relink phase: entry fixes (with their final COPIED bit), the snapshot table and header switches. */
async function relinkWrites(
  ctx: PlanContext,
  pb: PlanBuilder,
  relinkValue: Map<number, { hi: number; lo: number; why: string }>,
  x: WriteInputs,
): Promise<void> {
  const h = ctx.header;
  for (const [entry, v] of ctx.entryFix) {
    const fin = relinkValue.get(entry) ?? v;
    const inL1 =
      (entry >= h.l1TableOffset && entry < h.l1TableOffset + h.l1Size * 8) ||
      ctx.walk.snapshots.some((s) => entry >= s.l1TableOffset && entry < s.l1TableOffset + s.l1Size * 8);
    await pb.write('relink', entry, entryBytes(fin.hi, fin.lo), inL1 ? 'l1-entry' : 'l2-entry', v.why);
  }
  if (x.alloc.snapshotTable)
    await pb.write(
      'relink',
      C.HDR.nbSnapshots,
      x.willBe.snapshotHeader,
      'header',
      'switch to the rewritten snapshot table (12 bytes)',
    );
  for (const f of ctx.headerFixes) await pb.write('relink', f.offset, f.bytes, 'header', f.why);
  if (x.headerExt)
    await pb.write(
      'relink',
      x.headerExt.offset,
      x.headerExt.bytes,
      'header',
      'drop the stale bitmaps extension (header extension area rewritten; every pointer field unchanged)',
    );
}

/**
 * In-place refcount changes, per refcount block, from one count to another. The two differ only
 * where the target differs from the on-disk count (`changed`, ascending): the in-force counts lie
 * between them.
 */
async function refcountBlockChanges(
  ctx: PlanContext,
  pb: PlanBuilder,
  phase: 'raise' | 'lower',
  changed: number[],
  from: CountsView,
  to: CountsView,
): Promise<void> {
  const cs = ctx.clusterSize;
  const entries = ctx.geo.refcountBlockEntries;
  const byGroup = new Map<number, number[]>();
  for (const c of changed) {
    if (count(from, c) === count(to, c)) continue;
    const g = Math.floor(c / entries);
    const list = byGroup.get(g);
    if (list) list.push(c);
    else byGroup.set(g, [c]);
  }
  if (!byGroup.size) return;
  for (const rb of ctx.walk.refblocks) {
    if (rb.status !== 'ok') continue;
    const moved = byGroup.get(rb.index);
    if (!moved) continue;
    const first = rb.index * entries;
    const before = await pb.read(rb.offset, cs);
    const after = before.slice();
    for (const c of moved) setRefcount(after, c - first, ctx.geo.refcountOrder, count(to, c));
    await pb.writeDiff(phase, rb.offset, before, after, 'refcount-block', `${phase} refcounts in block ${rb.index}`);
  }
}

/**
 * The higher of the on-disk and target count per cluster (read only from here on). Usually one of
 * the two already is that (-r leaks never raises; a clean image never lowers): then it is shared,
 * not copied, as each copy is a large array.
 */
function countsInForce(target: CountsOverlay, onDisk: ClusterCounts, changed: number[]): CountsView {
  const n = target.length;
  let targetHigher = false;
  let onDiskHigher = false;
  for (const c of changed) {
    const d = c < onDisk.length ? onDisk[c]! : 0;
    const t = target.at(c)!;
    if (d > t) onDiskHigher = true;
    else if (t > d) targetHigher = true;
    if (onDiskHigher && targetHigher) break;
  }
  if (!onDiskHigher) return target;
  if (!targetHigher && onDisk.length >= n) return onDisk.subarray(0, n);
  const inForce = target.copy();
  for (const c of changed) if (c < onDisk.length && onDisk[c]! > inForce.at(c)!) inForce.set(c, onDisk[c]!);
  return inForce;
}

/** A count from a per-cluster array, 0 past its end (as the on-disk counts read past the walk). */
const count = (a: CountsView, c: number): number => (c < a.length ? a.at(c)! : 0);

/** Whether some cluster the final tables reference moves onto or off refcount 1. */
function crossesOne(final: CountsView, onDisk: ClusterCounts, refs: RefWalk['refs'], changed?: number[]): boolean {
  const crosses = (c: number): boolean => {
    const f = final.at(c)!;
    const d = c < onDisk.length ? onDisk[c]! : 0;
    return f !== d && (f === 1) !== (d === 1) && c < refs.length && refs[c]! > 0;
  };
  if (changed) return changed.some((c) => c < final.length && crosses(c));
  for (let c = 0; c < final.length; c++) if (crosses(c)) return true;
  return false;
}

function hasLowRefcounts(w: RefWalk): boolean {
  for (const c of w.mismatched) if (c < w.refs.length && !w.onDiskUnknown[c] && w.onDisk[c]! < w.refs[c]!) return true;
  return false;
}

function countLow(w: RefWalk, target: CountsView): number {
  let n = w.bad.length;
  const { refs, onDisk } = w;
  const end = Math.min(target.length, refs.length);
  for (const c of w.mismatched) if (c < end && (c < onDisk.length ? onDisk[c]! : 0) < refs[c]!) n++;
  return n;
}
