// The salvage report reduced to what the wizard shows before and after writing: how much of the
// active disk comes back, from where, what is lost and what was guessed.
import type { SalvagePreview } from '../contract/contract.js';
import { salvageOutcome } from '../salvage/salvage-outcome.js';
import type { SalvageReport } from '../salvage/types.js';

const MAX_RANGES = 100;

export function salvagePreview(r: SalvageReport): SalvagePreview | undefined {
  const v = r.views.find((x) => x.kind === 'active') ?? r.views[0];
  if (!v) return undefined;
  const p: SalvagePreview = {
    header: r.header as SalvagePreview['header'],
    clusterSize: r.clusterSize,
    clusterSizeSource: r.clusterSizeSource,
    virtualSize: v.virtualSize,
    virtualSizeSource: r.virtualSizeSource,
    bytes: { ...v.bytes },
    confidence: v.confidence,
    l2Tables: v.l2Tables.length,
    l2Guessed: v.l2Tables.filter((t) => t.confidence < 1).length,
    lostRanges: v.lost.slice(0, MAX_RANGES).map((l) => ({ start: l.start, end: l.end, reason: l.reason })),
    lostRangesMore: Math.max(0, v.lost.length - MAX_RANGES),
    guesses: r.guesses.slice(0, 50),
    warnings: r.warnings.slice(0, 50),
    snapshots: r.disks.filter((d) => d.kind === 'snapshot').length,
    // No backing was opened or named, yet unallocated bytes are not counted as zeros: the header that
    // would have said whether there is a backing file is lost.
    backingUnknown: r.header !== 'intact' && r.backing === undefined && v.bytes.backingMissing > 0,
    outcome: outcomeOf(salvageOutcome([v])),
    placement: v.placement.slice(0, MAX_RANGES).map((x) => ({ ...x })),
    placementMore: Math.max(0, v.placement.length - MAX_RANGES),
  };
  const guessed = v.l2Tables.filter((t) => t.confidence < 1);
  // The least sure placement among those that hold recovered data decides the words.
  if (guessed.length) p.guessedConfidence = Math.min(...guessed.map((t) => t.confidence));
  if (r.headerDamage !== undefined && r.header !== 'intact') p.headerDamage = r.headerDamage;
  return p;
}

function outcomeOf(o: ReturnType<typeof salvageOutcome>): SalvagePreview['outcome'] {
  return { exitCode: o.exitCode, words: o.words };
}
