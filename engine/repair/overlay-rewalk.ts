/**
 * Phase 6 of the plan: the image as it will be. Every pointer fix, copy, new snapshot table and
 * header rewrite is laid over the image in memory (nothing is written), and the walk runs again on
 * that: its counts are the final reference counts.
 */
import * as C from '../format/constants.js';
import { putU32, putU64, u32 } from '../format/bytes.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import type { Allocation } from './allocation.js';
import { OverlayIO } from './overlay-io.js';
import { at, entryBytes, type PlanContext } from './plan-context.js';
import { walkReferences, type RefWalk } from './references.js';

export interface ImageAsItWillBe {
  img: Qcow2Image;
  walk: RefWalk;
  /** Whether anything was re-pointed (else img and walk are the original ones). */
  repointed: boolean;
  /** The 12 header bytes (count, offset) switching to the rewritten snapshot table. */
  snapshotHeader: Uint8Array;
}

export async function rewalkWithFixes(
  ctx: PlanContext,
  alloc: Allocation,
  headerExt: { offset: number; bytes: Uint8Array } | undefined,
): Promise<ImageAsItWillBe> {
  const cs = ctx.clusterSize;
  const ov = new OverlayIO(ctx.img.io, ctx.originalLength);
  for (const [entry, v] of ctx.entryFix) await ov.write(entry, entryBytes(v.hi, v.lo));
  for (const cp of alloc.copies) {
    cp.content = await readPadded(ov, cp.from * cs, cs);
    if (cp.kind === 'l2') cp.content = withoutCopiedFlags(cp.content, ctx.img);
    await ov.write(cp.to * cs, cp.content);
    for (const e of cp.entries) {
      const cur = await readPadded(ov, e, 8);
      const hi = ((u32(cur, 0) & ~C.L2E_OFFSET_MASK_HI) | Math.floor((cp.to * cs) / 0x1_0000_0000)) >>> 0;
      const lo = ((u32(cur, 4) & ~C.L2E_OFFSET_MASK_LO) | ((cp.to * cs) >>> 0)) >>> 0;
      ctx.entryFix.set(e, { hi, lo, why: `point to the copy of cluster ${cp.from} at ${at(cp.to * cs)} (${cp.why})` });
      await ov.write(e, entryBytes(hi, lo));
    }
    ctx.fixes.push({
      kind: 'cross-link-copied',
      counts: 'corruption',
      differsFromQemu: true,
      text: `${cp.why}: copied to cluster ${cp.to} so each referrer keeps its own ${cp.kind === 'l2' ? 'L2 table' : 'data'} — QEMU would raise the refcount and silently share it`,
    });
    ctx.corruptionsFixed++;
  }
  const snapshotHeader = new Uint8Array(12);
  if (alloc.snapshotTable) {
    await ov.write(alloc.snapshotTableStart * cs, alloc.snapshotTable);
    putU32(snapshotHeader, 0, ctx.walk.snapshots.length);
    putU64(snapshotHeader, 4, alloc.snapshotTableStart * cs);
    await ov.write(C.HDR.nbSnapshots, snapshotHeader);
  }
  if (headerExt) await ov.write(headerExt.offset, headerExt.bytes);
  for (const f of ctx.headerFixes) await ov.write(f.offset, f.bytes);
  // Nothing re-pointed: the image as it will be has the same references (skip the second walk).
  const repointed =
    ctx.entryFix.size > 0 ||
    alloc.copies.length > 0 ||
    alloc.snapshotTable !== undefined ||
    headerExt !== undefined ||
    ctx.headerFixes.length > 0;
  if (!repointed) return { img: ctx.img, walk: ctx.walk, repointed, snapshotHeader };
  const img = await Qcow2Image.open(ov, { checkMode: true, zeroFillPastEof: true });
  return { img, walk: await walkReferences(img), repointed, snapshotHeader };
}

/** An L2 table copy: data clusters become shared with the original table, so no entry may keep COPIED. */
function withoutCopiedFlags(t: Uint8Array, img: Qcow2Image): Uint8Array {
  const out = t.slice();
  const step = img.geo.l2EntrySize;
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(out, j * step);
    if (hi & C.OFLAG_COMPRESSED_HI) continue;
    putU32(out, j * step, (hi & ~C.OFLAG_COPIED_HI) >>> 0);
  }
  return out;
}
