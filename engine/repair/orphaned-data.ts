/**
 * Leaked clusters that still hold data (the checker's 'orphaned-data'), in both repair modes:
 *  - a leaked cluster nothing refers to whose content is data (not zeros, no table, no refcount
 *    block): where it belonged is unknown, so freeing it could throw guest data away. -r leaks
 *    keeps it and says so (QEMU would free it); -r all frees it as QEMU does and names it
 *    (unplaced-data.ts: what it frees, and the guest data lost with it);
 *  - a data cluster a snapshot maps at guest offset g with one more use counted than referrers,
 *    while the active disk maps nothing at g: the active table lost its pointer. The cluster stays
 *    (the snapshot keeps it); the active range g reads zeros and is named in guest-ranges-lost.
 */
import { holdsData } from '../check/lost-tables.js';
import { u32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { dataClusters, l1Offset } from '../format/l2-entry.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { Layer, TraversalVisitor } from '../image/traversal/index.js';
import { readPadded } from '../io/positional-io.js';
import { addLostRange, describeRange } from './guest-ranges.js';
import type { PlanContext } from './plan-context.js';
import { clusterList, nameEmptiedEntries } from './unplaced-data.js';

/** Leaked clusters read per call when looking for data (bytes). */
const READ_BYTES = 1 << 20;

export async function planOrphanedData(ctx: PlanContext): Promise<void> {
  await keepLeakedData(ctx);
  await nameLostShares(ctx);
}

async function keepLeakedData(ctx: PlanContext): Promise<void> {
  const w = ctx.walk;
  const cs = ctx.clusterSize;
  const lctx = {
    clusterSize: cs,
    fileSize: w.fileSize,
    extendedL2: ctx.geo.extendedL2,
    refcountOrder: ctx.geo.refcountOrder,
    snapshots: w.snapshots.length,
  };
  const leaked = (c: number): boolean =>
    w.refs[c] === 0 &&
    !w.onDiskUnknown[c] &&
    w.onDisk[c]! >= 1 &&
    !w.metadata.has(c) &&
    !w.oldRefcountClusters.has(c) &&
    !ctx.keep.has(c) &&
    !ctx.reserved.has(c);
  const kept: number[] = [];
  const perRead = Math.max(1, Math.floor(READ_BYTES / cs));
  const fileClusters = Math.floor(w.fileSize / cs);
  // Every leaked cluster is a mismatched one: runs of them are read together.
  const cand = w.mismatched;
  for (let i = 0; i < cand.length; i++) {
    const c = cand[i]!;
    if (c < 1 || c >= fileClusters || !leaked(c)) continue;
    let n = 1;
    while (n < perRead && c + n < fileClusters && cand[i + n] === c + n && leaked(c + n)) n++;
    const bytes = await readPadded(ctx.io, c * cs, n * cs);
    for (let j = 0; j < n; j++) if (holdsData(bytes.subarray(j * cs, (j + 1) * cs), lctx)) kept.push(c + j);
    i += n - 1;
  }
  if (!kept.length) return;
  if (ctx.all) {
    // -r all frees them as QEMU does (a repair interrupted by a crash leaves such clusters too),
    // unless a later phase re-links them; unplaced-data.ts says what was freed and what was lost.
    ctx.orphanedData.push(...kept);
    await nameEmptiedEntries(ctx);
    return;
  }
  const list = clusterList(kept, cs);
  for (const c of kept) {
    ctx.keep.add(c);
    ctx.reserved.add(c);
  }
  ctx.fixes.push({
    kind: 'orphaned-data-kept',
    counts: 'none',
    differsFromQemu: true,
    text: `refused to free ${kept.length} leaked cluster(s) that still hold data no table maps any more (${list}): possibly guest data a damaged table lost, and where it belonged cannot be told — copy it out with \`qcow2-doctor salvage\` first; \`check -r all\` or \`qemu-img check -r leaks\` frees them (QEMU would free them)`,
  });
}

/**
 * Data clusters the image counts more uses of than entries refer to (a lost share, a lost compressed
 * stream): referenced, on-disk count known and higher, not metadata and no L2 table.
 */
export function overCountedData(ctx: PlanContext): Set<number> {
  const w = ctx.walk;
  const out = new Set<number>();
  for (const c of w.mismatched)
    if (
      c >= 1 &&
      c < w.hostClusters &&
      w.refs[c]! > 0 &&
      !w.onDiskUnknown[c] &&
      w.onDisk[c]! > w.refs[c]! &&
      !w.metadata.has(c) &&
      !w.allL2.has(c * ctx.clusterSize)
    )
      out.add(c);
  return out;
}

/** Snapshot-mapped data whose active share was lost: the active guest range is named as lost. */
async function nameLostShares(ctx: PlanContext): Promise<void> {
  const w = ctx.walk;
  const cs = ctx.clusterSize;
  const candidates = w.snapshots.length ? overCountedData(ctx) : new Set<number>();
  if (!candidates.size) return;
  const layers: Layer[] = w.snapshots.map((s) => ({
    l1Offset: s.l1TableOffset,
    l1Size: Math.min(s.l1Size, ctx.header.l1Size),
    snapshotId: s.id,
  }));
  const named = new Set<number>();
  /** Guest offsets where this table maps a candidate, with the host clusters mapped there. */
  const mapped: [number, number[]][] = [];
  const visitor: TraversalVisitor = {
    // A compressed stream counts one use in every host cluster it touches: any of them a candidate.
    l2Entry: (e) => {
      const ks = dataClusters(e.hi, e.lo, ctx.geo, cs);
      if (ks.some((k) => candidates.has(k))) mapped.push([e.guestOffset, ks]);
    },
    l2TableEnd: async () => {
      for (const [g, ks] of mapped)
        if (g < ctx.header.size && !named.has(g) && (await activeEmpty(ctx, g))) {
          named.add(g);
          // The active use each named share lost: lost-streams.ts counts the rest as unexplained.
          for (const k of ks) ctx.lostShareUses.set(k, (ctx.lostShareUses.get(k) ?? 0) + 1);
        }
      mapped.length = 0;
    },
  };
  // Each snapshot L2 table once, read where it lies (the planner's own file, as every phase).
  await traverse({ ...sourceOf(ctx.img), io: ctx.io, fileSize: w.fileSize }, visitor, { layersOnly: layers });
  if (!named.size) return;
  const list = [...named].sort((a, b) => a - b);
  for (const g of list) addLostRange(ctx, g, cs);
  const ranges = list.slice(0, 8).map((g) => describeRange({ start: g, length: cs }));
  ctx.fixes.push({
    kind: 'active-share-lost',
    counts: 'none',
    explain: true,
    text: `${list.length} guest cluster(s) of the active disk lost their mapping while a snapshot still holds the data (${ranges.join(', ')}${list.length > 8 ? ', …' : ''}): they read as zeros now; the data is still in the snapshot (\`qemu-img snapshot -a\` or \`qcow2-doctor salvage\` of the snapshot brings it back)`,
  });
}

/**
 * Whether the active disk maps nothing at guest offset g (its L1 slot or L2 entry is zero), as it
 * will be: an L1 entry an earlier phase re-links (a lost table put back) maps again.
 */
async function activeEmpty(ctx: PlanContext, g: number): Promise<boolean> {
  const span = ctx.geo.l1Coverage;
  const i = Math.floor(g / span);
  if (i >= ctx.header.l1Size) return false;
  const l1 = ctx.img.l1;
  const fixed = ctx.entryFix.get(ctx.header.l1TableOffset + i * 8);
  const table = fixed ? l1Offset(fixed.hi, fixed.lo) || undefined : ctx.walk.activeL1.find((e) => e.index === i)?.l2;
  if (fixed && table === undefined) return true;
  if (table === undefined) return u32(l1, i * 8) === 0 && u32(l1, i * 8 + 4) === 0;
  const step = ctx.geo.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const e = await readPadded(ctx.io, table + Math.floor((g % span) / ctx.clusterSize) * step, 8);
  return u32(e, 0) === 0 && u32(e, 4) === 0;
}
