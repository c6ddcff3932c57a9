/**
 * The image as the planner trusts it. Where the evidence says a refcount table entry names a live
 * L2 table (evidence.ts), that entry is set aside in memory and the image is walked without it, so
 * the L1 entry that is right keeps its table and data; the refcount structure is then rebuilt.
 * For -r all, an L1 entry (active or a snapshot's) naming guest data as its L2 table (l1-into-data.ts) is set aside
 * the same way, so no phase edits the data as a table; the plan then clears it.
 */
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { findMisplacedRefblocks, type MisplacedRefblock } from './evidence.js';
import { findL1EntriesIntoData, type L1IntoData } from './l1-into-data.js';
import { OverlayIO } from './overlay-io.js';
import { at, type PlanContext } from './plan-context.js';
import { findMismatched, markOnDiskUnknown, type RefWalk, walkReferences } from './references.js';

export interface TrustedView {
  img: Qcow2Image;
  walk: RefWalk;
  /** Refcount table entries set aside because their cluster is a live L2 table. */
  misplaced: MisplacedRefblock[];
  /** L1 entries set aside because they name guest data as their L2 table (-r all only). */
  intoData: L1IntoData[];
}

export async function openTrusted(io: PositionalIO, length: number, all: boolean): Promise<TrustedView> {
  const img0 = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const walk0 = await walkReferences(img0);
  const misplaced = await findMisplacedRefblocks(img0, walk0);
  const intoData = all ? await findL1EntriesIntoData(img0, walk0) : [];
  if (!misplaced.length && !intoData.length) return { img: img0, walk: walk0, misplaced, intoData };
  const ov = new OverlayIO(io, length);
  for (const m of misplaced) await ov.write(m.entry, new Uint8Array(8));
  for (const d of intoData) await ov.write(d.entry, new Uint8Array(8));
  const img = await Qcow2Image.open(ov, { checkMode: true, zeroFillPastEof: true });
  const walk = await walkReferences(img);
  // Those groups' on-disk refcounts are unknown (their block is lost), not zero: nothing there is free.
  const entries = img.geo.refcountBlockEntries;
  for (const m of misplaced) markOnDiskUnknown(walk, m.index * entries, (m.index + 1) * entries);
  walk.mismatched = findMismatched(walk);
  return { img, walk, misplaced, intoData };
}

/** Say what was set aside and why; the refcount structure is rebuilt. */
export function noteMisplacedRefblocks(ctx: PlanContext, misplaced: MisplacedRefblock[]): void {
  if (!misplaced.length) return;
  ctx.forceRebuild = true;
  const cs = ctx.clusterSize;
  for (const m of misplaced) {
    ctx.fixes.push({
      kind: 'refcount-table-entry-distrusted',
      counts: 'corruption',
      explain: true,
      text: `refcount table entry ${m.index} named the cluster at ${at(m.cluster * cs)} as a refcount block, but ${m.l1Entries.length > 1 ? `${m.l1Entries.length} L1 entries point` : 'an L1 entry points'} there as an L2 table and its content validates as one (it maps ${m.dataClusters} data cluster(s)); the refcount table is the wrong claimant: the refcount structure is rebuilt and every guest byte is kept`,
    });
    ctx.corruptionsFixed++;
  }
}
