/**
 * L2 entries that map guest data to a place nobody can read it from: an unaligned host offset (QEMU
 * fails the read) or a cluster wholly past the end of the file (reads as zeros). No readable data is
 * at stake, so -r all drops the pointer by default: the range reads as zeros (a zero cluster; in v2
 * images unallocated), the original entry stays in the undo journal, and the output names it. With
 * `cautious`, the part is refused instead and a person decides.
 */
import * as C from '../format/constants.js';
import { hex64 } from '../format/bytes.js';
import { l2Offset } from '../format/l2-entry.js';
import { addLostRange, guestOffsetsOfL2Entry } from './guest-ranges.js';
import { at, type PlanContext, whereIs } from './plan-context.js';
import type { BadEntry } from './references.js';

export function planDroppedPointer(ctx: PlanContext, b: BadEntry): void {
  // Extended L2 entries carry a subcluster bitmap in a second word: never rewritten half-way.
  // (-r leaks refuses too, so that nothing an unresolved pointer may need is freed.)
  // A compressed stream whose extent runs past the end of the file often still decompresses (QEMU
  // pads the short read): readable data is at stake, so it is never dropped.
  if (!ctx.all || ctx.opts.cautious || ctx.geo.extendedL2 || b.kind === 'l2-compressed-beyond-eof') {
    refuseDataPointer(ctx, b);
    return;
  }
  const v3 = ctx.header.version === 3;
  const target =
    b.kind === 'l2-data-unaligned'
      ? `unaligned host offset ${at(l2Offset(b.hi, b.lo))}`
      : `host offset ${at(l2Offset(b.hi, b.lo))}, past the end of the file`;
  const guests = guestOffsetsOfL2Entry(ctx, b);
  for (const g of guests) addLostRange(ctx, g, ctx.clusterSize);
  ctx.pointersLost++;
  const reads = v3 ? 'zeros' : 'zeros (or the backing file)';
  ctx.entryFix.set(b.entry, {
    hi: 0,
    lo: v3 ? C.OFLAG_ZERO_LO : 0,
    why: `${whereIs(b)}: drop the pointer to ${target} (was ${hex64(b.hi, b.lo)})`,
  });
  ctx.fixes.push({
    kind: 'pointer-dropped',
    counts: 'corruption',
    differsFromQemu: true,
    text: `${whereIs(b)}${guests.length ? ` (guest offset ${guests.map(at).join(', ')})` : b.snapshotId !== undefined ? ` (snapshot ${b.snapshotId})` : ''} pointed to ${target}, which nothing can read; pointer ${hex64(b.hi, b.lo)} dropped, the range now reads as ${reads} — the undo journal keeps the original entry (qcow2-doctor undo JOURNAL puts it back); QEMU leaves the error in place`,
  });
  ctx.corruptionsFixed++;
}

function refuseDataPointer(ctx: PlanContext, b: BadEntry): void {
  if (b.kind === 'l2-data-unaligned') {
    ctx.refusals.push({
      kind: b.kind,
      what: `${whereIs(b)} maps guest data to unaligned host offset ${at(l2Offset(b.hi, b.lo))}`,
      decide:
        'which cluster the data really is in (QEMU would count the two clusters it straddles); restore the entry by hand or clear it (that range then reads as zeros/backing) — without --cautious, -r all drops it',
    });
    return;
  }
  const compressed = b.kind === 'l2-compressed-beyond-eof';
  ctx.refusals.push({
    kind: b.kind,
    what: `${whereIs(b)} points past the end of the file (${hex64(b.hi, b.lo)})`,
    decide: compressed
      ? 'the compressed stream may still decompress from the part inside the file (QEMU reads it): copy the data out (qemu-img convert) before clearing the entry; leaked clusters are kept'
      : 'whether a leaked cluster is the data it lost (leaked clusters are kept), or to clear the entry (that range then reads as zeros/backing) — without --cautious, -r all drops it',
  });
}
