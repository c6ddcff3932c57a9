/**
 * Phase 2 of the plan: damaged pointers to tables. An L1 entry that no longer points at its L2 table
 * (unaligned, past the end of the file, into another structure) is re-linked to the one orphaned L2
 * table that still reads as one; an active L1 table pointer past the end of the file is re-linked to
 * the one orphaned L1 table. Anything less certain is refused, with the candidates named.
 */
import * as C from '../format/constants.js';
import { putU64 } from '../format/bytes.js';
import { readPadded } from '../io/positional-io.js';
import { l2TableEvidence } from './evidence.js';
import { addLostRange, describeRange } from './guest-ranges.js';
import { findOrphanL1, findOrphanL2 } from './orphan-tables.js';
import { at, l1EntryOffset, type PlanContext, whereIs } from './plan-context.js';
import type { BadEntry } from './references.js';

export async function planL1EntryRelinks(ctx: PlanContext, relinkNeeded: BadEntry[]): Promise<void> {
  if (!relinkNeeded.length) return;
  const { clusterSize: cs, walk: w } = ctx;
  const cands = await findOrphanL2(ctx.img, w);
  for (const c of cands) ctx.reserved.add(c);
  const b = relinkNeeded[0]!;
  if (ctx.all && relinkNeeded.length === 1 && cands.length === 1) {
    const off = cands[0]! * cs;
    const hi = Math.floor(off / 0x1_0000_0000) | (b.active ? C.OFLAG_COPIED_HI : 0);
    ctx.entryFix.set(b.entry, {
      hi: hi >>> 0,
      lo: off >>> 0,
      why: `${whereIs(b)}: re-link to the orphaned L2 table at ${at(off)}`,
    });
    ctx.fixes.push({
      kind: 're-link-l2',
      counts: 'corruption',
      differsFromQemu: true,
      text: `${whereIs(b)} pointed to ${at(l1EntryOffset(b))} (${problem(b)}); re-linked to the orphaned L2 table at ${at(off)}, which still looks valid and whose data clusters nothing else uses — QEMU would free that table and its data`,
    });
    ctx.corruptionsFixed++;
    return;
  }
  for (const x of relinkNeeded) {
    if (ctx.all && cands.length === 0 && x.kind === 'l1-into-metadata' && (await clearable(ctx, x))) {
      clearL1Entry(ctx, x);
      continue;
    }
    ctx.refusals.push({
      kind: x.kind,
      what: `${whereIs(x)} points to ${at(l1EntryOffset(x))} (${problem(x)})`,
      decide: cands.length
        ? `which orphaned L2 table it should point to (candidates: ${cands.map((c) => at(c * cs)).join(', ')}); leaked clusters are kept`
        : 'no orphaned L2 table was found: clear the entry (its guest range then reads as zeros/backing) if that is acceptable',
    });
  }
}

/**
 * Whether an L1 entry pointing into another structure may be cleared: never when the cluster it names
 * validates as an L2 table (then the pointer may well be right, and the other claimant wrong).
 */
async function clearable(ctx: PlanContext, x: BadEntry): Promise<boolean> {
  const cs = ctx.clusterSize;
  const off = l1EntryOffset(x);
  if (off % cs !== 0) return true;
  const buf = await readPadded(ctx.img.io, off, cs);
  return l2TableEvidence(buf, off / cs, ctx.img, ctx.walk.fileSize) === 0;
}

/** The target is provably another structure, not an L2 table, and no lost table exists: clear the entry. */
function clearL1Entry(ctx: PlanContext, x: BadEntry): void {
  const cs = ctx.clusterSize;
  const what = ctx.walk.metadata.get(Math.floor(l1EntryOffset(x) / cs));
  const start = x.index * ctx.geo.l1Coverage;
  if (x.active) addLostRange(ctx, start, ctx.geo.l1Coverage);
  const range = describeRange({ start, length: Math.min(ctx.geo.l1Coverage, Math.max(0, ctx.header.size - start)) });
  ctx.entryFix.set(x.entry, { hi: 0, lo: 0, why: `${whereIs(x)}: pointed into the ${what}; cleared` });
  ctx.fixes.push({
    kind: 'l1-cleared',
    counts: 'corruption',
    differsFromQemu: true,
    text: `${whereIs(x)} pointed into the ${what} at ${at(l1EntryOffset(x))}, whose content is not an L2 table, and no orphaned L2 table exists; the entry was cleared: ${x.active ? `guest range ${range}` : `that range of snapshot ${x.snapshotId ?? '?'}`} now reads as unallocated, and whatever it mapped is lost (the undo journal keeps the entry)`,
  });
  ctx.corruptionsFixed++;
}

const problem = (b: BadEntry): string => b.kind.replace('l1-', '').replace(/-/g, ' ');

/**
 * The active L1 table lies past the end of the file: look for the one leaked cluster that still
 * reads as this image's L1 table (every entry empty or pointing at an orphaned L2 table).
 */
export async function planLostL1Relink(ctx: PlanContext, lostL1: BadEntry | undefined): Promise<void> {
  if (!lostL1) return;
  const { clusterSize: cs, header: h } = ctx;
  const l2s = new Set(await findOrphanL2(ctx.img, ctx.walk));
  const cands = h.l1Size * 8 <= cs ? await findOrphanL1(ctx.img, ctx.walk, l2s) : [];
  for (const c of cands) ctx.reserved.add(c);
  for (const c of l2s) ctx.reserved.add(c);
  if (cands.length === 1) {
    const off = cands[0]! * cs;
    const bytes = new Uint8Array(8);
    putU64(bytes, 0, off);
    ctx.headerFixes.push({
      offset: C.HDR.l1TableOffset,
      bytes,
      why: `header.l1_table_offset ${at(h.l1TableOffset)} (past the end of the file) → ${at(off)}, the orphaned L1 table`,
    });
    ctx.fixes.push({
      kind: 're-link-l1',
      counts: 'corruption',
      differsFromQemu: true,
      text: `the active L1 table pointer (${at(h.l1TableOffset)}) lay past the end of the file; re-linked to the orphaned L1 table at ${at(off)}, whose entries all point at orphaned L2 tables — QEMU would free the whole tree and its data`,
    });
    ctx.corruptionsFixed++;
    return;
  }
  ctx.refusals.push({
    kind: 'l1-table-beyond-eof',
    what: `the active L1 table at ${at(h.l1TableOffset)} lies past the end of the file`,
    decide: cands.length
      ? `which leaked cluster is the L1 table (candidates: ${cands.map((c) => at(c * cs)).join(', ')}); leaked clusters are kept`
      : 'where the L1 table really is (leaked clusters that look like its L2 tables are kept); restore header.l1_table_offset by hand',
  });
}
