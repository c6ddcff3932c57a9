// How each guest range of a disk was placed, from its L2 tables' placements: the per-range account
// the reports show (from L1, from a snapshot's L1, by evidence, by elimination, by guess).
import type { GuestView, L2Placement, PlacedRange } from './types.js';

function how(v: GuestView, p: L2Placement): Pick<PlacedRange, 'how' | 'detail'> {
  switch (p.source) {
    case 'l1':
      if (p.confidence < 1)
        return {
          how: 'by-guess',
          detail: p.evidence ?? 'L1 table found by scanning; its start in the file is uncertain',
        };
      return v.kind === 'snapshot'
        ? { how: 'from-snapshot-l1', detail: `L1 table of snapshot ${v.id}` }
        : { how: 'from-l1', detail: 'active L1 table' };
    case 'evidence':
      return { how: 'by-evidence', detail: p.evidence ?? 'a structure in the data records its position' };
    case 'only-slot':
      return { how: 'by-elimination', detail: 'the only L2 table left for the only L1 slot left' };
    case 'snapshot-match':
      // A snapshot's L1 holding the table at that slot, with the active share counted: read, not guessed.
      if (p.confidence === 1 && p.evidence) return { how: 'from-snapshot-l1', detail: p.evidence };
      return { how: 'by-guess', detail: "shares data with a snapshot's L2 table at this index" };
    case 'inherited':
      return { how: 'by-guess', detail: "assumed unchanged since the newest snapshot (its L1 table's entry)" };
    default:
      return { how: 'by-guess', detail: 'host order of the L2 tables in the file' };
  }
}

export function placedRanges(v: GuestView, coverage: number): PlacedRange[] {
  const out: PlacedRange[] = [];
  for (const p of [...v.l2.values()].sort((a, b) => a.l1Index - b.l1Index)) {
    const start = p.l1Index * coverage;
    if (start >= v.virtualSize) continue;
    const end = Math.min(v.virtualSize, start + coverage);
    const h = how(v, p);
    const last = out[out.length - 1];
    if (
      last &&
      last.end === start &&
      last.how === h.how &&
      last.detail === h.detail &&
      last.confidence === p.confidence
    )
      last.end = end;
    else out.push({ start, end, how: h.how, confidence: p.confidence, detail: h.detail });
  }
  return out;
}
