/**
 * Compressed descriptors that are garbage: a stream that lies in the header or another metadata
 * structure (a flipped compressed bit on an empty entry points at offset 0). QEMU's check counts the
 * clusters and calls the image clean once their refcounts are raised, but every read of that guest
 * cluster fails. When the stream does not decode either, no readable data is at stake: -r all drops
 * the pointer (the range then reads as zeros, and is named lost), as for other unreadable pointers.
 */
import { decodes } from '../check/compressed-sample.js';
import { hex64 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { decodeCompressed } from '../format/l2-entry.js';
import { addLostRange, guestOffsetsOfL2Entry } from './guest-ranges.js';
import { at, type PlanContext, whereIs } from './plan-context.js';
import type { BadEntry } from './references.js';

export async function planGarbageCompressed(ctx: PlanContext, b: BadEntry): Promise<void> {
  const d = decodeCompressed(b.hi, b.lo, ctx.geo);
  const meta = b.qemuClusters.map((c) => ctx.walk.metadata.get(c)).find((m) => m !== undefined) ?? 'metadata';
  const where = `${whereIs(b)} holds a compressed descriptor (${hex64(b.hi, b.lo)}) whose stream at ${at(d.offset)} lies in the ${meta}`;
  // Subcluster bitmaps must be zero on a compressed entry; when they are not, a person decides.
  const unsupported = ctx.walk.bad.some((x) => x.entry === b.entry && x.kind === 'l2-unsupported');
  const readable = await decodesOnce(ctx, d.offset, d.size);
  if (!ctx.all || ctx.opts.cautious || unsupported || readable) {
    ctx.refusals.push({
      kind: b.kind,
      what: where,
      decide: readable
        ? 'the stream decodes although it lies in metadata: copy the guest cluster out (qemu-img convert) before clearing the entry'
        : 'clear the entry (that range then reads as zeros/backing): every read of it fails now — without --cautious, -r all drops it',
    });
    return;
  }
  const guests = guestOffsetsOfL2Entry(ctx, b);
  for (const g of guests) addLostRange(ctx, g, ctx.clusterSize);
  // A standard entry becomes a zero cluster; an extended one becomes unallocated (its bitmaps are zero).
  const zeroFlag = ctx.header.version === 3 && !ctx.geo.extendedL2;
  ctx.entryFix.set(b.entry, {
    hi: 0,
    lo: zeroFlag ? C.OFLAG_ZERO_LO : 0,
    why: `${whereIs(b)}: drop the garbage compressed descriptor (was ${hex64(b.hi, b.lo)})`,
  });
  ctx.fixes.push({
    kind: 'pointer-dropped',
    counts: 'corruption',
    differsFromQemu: true,
    text: `${where}${guests.length ? ` (guest offset ${guests.map(at).join(', ')})` : b.snapshotId !== undefined ? ` (snapshot ${b.snapshotId})` : ''}, and it does not decode: every read of that cluster fails; pointer dropped, the range now reads as ${zeroFlag ? 'zeros' : 'zeros (or the backing file)'} — the undo journal keeps the original entry (qcow2-doctor undo JOURNAL puts it back); QEMU's check raises the refcount of the ${meta} instead`,
  });
  ctx.corruptionsFixed++;
}

/** Streams already decoded per plan (damage often repeats one descriptor in many entries). */
const decoded = new WeakMap<PlanContext, Map<string, boolean>>();

async function decodesOnce(ctx: PlanContext, offset: number, size: number): Promise<boolean> {
  let m = decoded.get(ctx);
  if (!m) decoded.set(ctx, (m = new Map()));
  const key = `${offset}:${size}`;
  let v = m.get(key);
  if (v === undefined) m.set(key, (v = await decodes(ctx.img, offset, size)));
  return v;
}
