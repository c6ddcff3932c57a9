/**
 * Leaked clusters that still hold data and that -r all frees (orphaned-data.ts finds them): each was
 * most likely guest data an entry lost. Where the damage left evidence of which entry, that guest
 * range is named lost:
 *  - an active L2 entry that still carries OFLAG_COPIED but no offset (its pointer was cleared, or
 *    redirected onto the header at offset 0): QEMU never writes such an entry, and QEMU's check
 *    reads it as unallocated, so only the leaked cluster shows;
 *  - a data pointer redirected onto metadata, or dropped as unreadable (counted where they are named).
 * Freed clusters beyond what the evidence accounts for held data whose guest position nobody can
 * tell: the plan says so, and the repair does not end with a clean claim.
 */
import * as C from '../format/constants.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { TraversalVisitor } from '../image/traversal/index.js';
import type { CountsView } from './cluster-counts.js';
import { nameLostClusters } from './guest-ranges.js';
import { at, type PlanContext } from './plan-context.js';

/** Data freed whose place in the guest disk is unknown (absent when every freed cluster is accounted). */
export interface UnplacedDataLoss {
  clusters: number;
  bytes: number;
  /** Host offsets of the freed clusters (the undo journal keeps their bytes). */
  hostOffsets: number[];
}

/**
 * Active L2 entries whose pointer was taken but whose COPIED flag survived: their guest ranges are
 * named lost (they read as zeros or the backing file), and each may account for one freed cluster.
 * Only looked for when leaked clusters with data exist (a read of every active L2 table).
 */
export async function nameEmptiedEntries(ctx: PlanContext): Promise<void> {
  const cs = ctx.clusterSize;
  const span = ctx.geo.l1Coverage;
  const walked = ctx.walk.activeL2;
  const named: number[] = [];
  const visitor: TraversalVisitor = {
    // Only the tables the repair's walk accepted as active L2 tables.
    reference: (r) => r.target !== 'l2' || (walked.get(r.offset)?.length ?? 0) > 0,
    l2Entry: (e) => {
      if (!(e.hi & C.OFLAG_COPIED_HI) || e.hi & C.OFLAG_COMPRESSED_HI) return;
      if ((e.hi & C.L2E_OFFSET_MASK_HI) !== 0 || (e.lo & C.L2E_OFFSET_MASK_LO) !== 0) return;
      ctx.pointersLost++;
      // A zero flag (or, in extended L2, any subcluster bitmap) says what the guest read before: zeros
      // stay zeros; an allocated bitmap without an offset is refused elsewhere.
      if (ctx.geo.extendedL2 || e.lo & C.OFLAG_ZERO_LO) return;
      for (const l1 of ctx.walk.activeL1)
        if (l1.l2 === e.table) {
          const g = l1.index * span + e.index * cs;
          if (g < ctx.header.size) named.push(g);
        }
    },
  };
  await traverse({ ...sourceOf(ctx.img), io: ctx.io, fileSize: ctx.walk.fileSize }, visitor, { activeLayerOnly: true });
  if (!named.length) return;
  const ranges = nameLostClusters(ctx, named);
  ctx.fixes.push({
    kind: 'pointer-emptied',
    counts: 'none',
    explain: true,
    text: `${named.length} active L2 entr${named.length === 1 ? 'y has' : 'ies have'} lost the host offset of the data mapped there but kept the COPIED flag (${ranges}): ${named.length === 1 ? 'that guest range reads' : 'those guest ranges read'} as zeros (or from the backing file) now — the data is most likely among the leaked clusters`,
  });
}

/** "cluster 5 (0x50000), …" for people, at most eight named. */
export function clusterList(clusters: number[], cs: number): string {
  const shown = clusters.slice(0, 8).map((c) => `cluster ${c} (${at(c * cs)})`);
  return clusters.length > 8 ? `${shown.join(', ')} and ${clusters.length - 8} more` : shown.join(', ');
}

/**
 * The leaked clusters with data that -r all really frees (`target`: the refcount each cluster ends
 * with; a re-linked table's data ends referenced), named; and what of them the lost pointers do
 * not account for: guest data lost at positions nobody can tell.
 */
export function settleFreedData(ctx: PlanContext, target: CountsView): UnplacedDataLoss | undefined {
  const cs = ctx.clusterSize;
  const freed = ctx.orphanedData.filter((c) => c < target.length && target.at(c) === 0);
  if (!ctx.all || !freed.length) return undefined;
  ctx.fixes.push({
    kind: 'orphaned-data-freed',
    counts: 'none',
    explain: true,
    text: `freed ${freed.length} leaked cluster(s) that still held data no table maps any more (${clusterList(freed, cs)}), as QEMU does: possibly guest data a damaged table lost (where an entry shows which guest range, it is named lost) — \`qcow2-doctor undo\` with this repair's journal brings them back; \`check -r leaks\` keeps them`,
  });
  if (freed.length <= ctx.pointersLost) return undefined;
  ctx.fixes.push({
    kind: 'orphaned-data-unplaced',
    counts: 'none',
    explain: true,
    text: `${freed.length} freed cluster(s) held data whose place in the guest disk cannot be told (${ctx.pointersLost ? `only ${ctx.pointersLost} lost pointer(s) account for them` : 'no surviving entry says where they belonged'}): some guest data is lost at unknown positions — copy it out with \`qcow2-doctor salvage\` of the original or \`qcow2-doctor undo\` this repair; the repair does not call the image's data intact`,
  });
  return { clusters: freed.length, bytes: freed.length * cs, hostOffsets: freed.map((c) => c * cs) };
}
