// The salvage's verdict. "Nothing lost" and exit status 0 only when every recovered byte sits at a
// position read from surviving metadata or pinned by evidence; a placement by guess has its own
// status and words, wherever the verdict is shown (CLI text, JSON, the app).
import { humanSize } from './report-text.js';
import type { SalvageOutcome, ViewReport } from './types.js';

export const EXIT_LOST = 2;
export const EXIT_GUESSED = 4;

export function salvageOutcome(views: ViewReport[]): SalvageOutcome {
  let lost = 0,
    guessed = 0,
    backing = 0;
  let conf: number | undefined;
  for (const v of views) {
    // Data of a backing file that is missing (or whose name is lost) is not in the output either.
    lost += v.bytes.lost + v.bytes.backingMissing;
    backing += v.bytes.backingMissing;
    guessed += v.bytes.guessed;
    if (!v.bytes.guessed) continue;
    for (const p of v.l2Tables) if (p.confidence < 1) conf = Math.min(conf ?? 1, p.confidence);
  }
  const exitCode = ((lost > 0 ? EXIT_LOST : 0) | (guessed > 0 ? EXIT_GUESSED : 0)) as SalvageOutcome['exitCode'];
  const guess = `${humanSize(guessed)} placed by guess, confidence ${conf ?? 0}: that data may sit at the wrong offset in the disk`;
  const loss =
    backing === 0
      ? `${humanSize(lost)} lost (written as zeros)`
      : backing === lost
        ? `${humanSize(lost)} of unallocated ranges read from a backing file that is missing or whose name was lost (written as zeros)`
        : `${humanSize(lost)} lost (written as zeros), ${humanSize(backing)} of it unallocated ranges of a backing file that is missing or whose name was lost`;
  const words =
    exitCode === 0
      ? "recovered; every recovered byte's position is certain; nothing lost"
      : exitCode === EXIT_LOST
        ? `recovered with losses; ${loss}; every recovered byte's position is certain`
        : exitCode === EXIT_GUESSED
          ? `recovered; ${guess}; no range is known lost`
          : `recovered with losses; ${loss}; ${guess}`;
  const o: SalvageOutcome = { exitCode, lost, guessed, words };
  if (conf !== undefined) o.guessConfidence = conf;
  return o;
}
