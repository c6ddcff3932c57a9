/**
 * L2 entries that map guest data to a place nobody can read it from: an unaligned host offset, or
 * past the end of the file. Refused (today's cautious behaviour): what a person must decide is said.
 */
import { hex64 } from '../format/bytes.js';
import { l2Offset } from '../format/l2-entry.js';
import { at, type PlanContext, whereIs } from './plan-context.js';
import type { BadEntry } from './references.js';

export function planDroppedPointer(ctx: PlanContext, b: BadEntry, _alone: boolean): void {
  refuseDataPointer(ctx, b);
}

function refuseDataPointer(ctx: PlanContext, b: BadEntry): void {
  if (b.kind === 'l2-data-unaligned') {
    ctx.refusals.push({
      kind: b.kind,
      what: `${whereIs(b)} maps guest data to unaligned host offset ${at(l2Offset(b.hi, b.lo))}`,
      decide:
        'which cluster the data really is in (QEMU would count the two clusters it straddles); restore the entry by hand or clear it (that range then reads as zeros/backing)',
    });
    return;
  }
  ctx.refusals.push({
    kind: b.kind,
    what: `${whereIs(b)} points past the end of the file (${hex64(b.hi, b.lo)})`,
    decide:
      'whether a leaked cluster is the data it lost (leaked clusters are kept), or to clear the entry (that range then reads as zeros/backing)',
  });
}
