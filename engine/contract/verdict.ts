// The plain-language verdict: what a frightened non-expert reads first ("Your image was not closed
// cleanly. 12 clusters are leaked: wasted space, no harm to your data. ..."). Pure: used by the
// reports, the CLI and the recovery wizard alike (no node: imports here).
import type { Anomaly, QemuCounters } from './findings.js';

export type VerdictWord = 'clean' | 'leaks' | 'corrupt' | 'unreadable';

export interface PlainVerdict {
  word: VerdictWord;
  /** One short line, e.g. "Repair is recommended". */
  headline: string;
  /** The explanation, one sentence per fact, most important first. */
  sentences: string[];
  /** The exit code qemu-img check gives for this state. */
  exitCode: 0 | 1 | 2 | 3;
}

export interface VerdictInput {
  counters: QemuCounters;
  anomalies: readonly Anomaly[];
  /** The check stopped early (QEMU's "Check failed"), with its reason. */
  failed?: string;
  dirty?: boolean;
  corrupt?: boolean;
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

/** Clusters concerned by the anomalies of `kind` (runs summed). */
export function clustersOf(anomalies: readonly Anomaly[], kind: string): number {
  let n = 0;
  for (const a of anomalies) if (a.kind === kind) n += a.count;
  return n;
}

export function plainVerdict(v: VerdictInput): PlainVerdict {
  const c = v.counters;
  const s: string[] = [];
  if (v.dirty) s.push('Your image was not closed cleanly, so its bookkeeping of used space may be out of date.');
  if (v.corrupt)
    s.push('QEMU found a problem in this image earlier and marked it as corrupt; it will not open it for writing.');
  if (v.failed !== undefined) {
    s.push(`The check could not be completed (${v.failed}), so the findings below may be incomplete.`);
  } else if (c.checkErrors > 0) {
    s.push(
      `${plural(c.checkErrors, 'part', 'parts')} of the image's bookkeeping could not be read, so the check is incomplete.`,
    );
  }
  if (c.leaks > 0)
    s.push(`${plural(c.leaks, 'cluster is', 'clusters are')} leaked: wasted space, no harm to your data.`);
  const zeroRef = clustersOf(v.anomalies, 'refcount-zero-referenced');
  if (zeroRef > 0)
    s.push(
      `${plural(zeroRef, 'cluster is', 'clusters are')} in use but marked free: the next write could overwrite your data.`,
    );
  const low = clustersOf(v.anomalies, 'refcount-too-low');
  if (low > 0)
    s.push(
      `${plural(low, 'cluster is', 'clusters are')} used by more tables than counted: a later write could change data that another part of the disk still needs.`,
    );
  const other = c.corruptions - countedCorruptions(v.anomalies, ['refcount-zero-referenced', 'refcount-too-low']);
  if (other > 0) {
    const o = zeroRef + low > 0 ? 'other ' : '';
    s.push(`${plural(other, `${o}error was`, `${o}errors were`)} found in the image's tables.`);
  }

  let word: VerdictWord;
  let headline: string;
  let exitCode: PlainVerdict['exitCode'];
  if (v.failed !== undefined || c.checkErrors > 0) {
    word = 'unreadable';
    headline = 'The image could not be checked completely';
    exitCode = 1;
    s.push(
      'Do not write to the image. Work on a copy: a repair may rebuild what cannot be read, or salvage can copy the guest data out.',
    );
  } else if (c.corruptions > 0) {
    word = 'corrupt';
    headline = 'Repair is recommended';
    exitCode = 2;
    s.push('Repair is recommended before the image is used again. Repairing a copy keeps the original untouched.');
  } else if (c.leaks > 0) {
    word = 'leaks';
    headline = 'Only wasted space';
    exitCode = 3;
    s.push('Your data is safe. Repairing the leaks is optional: it frees the wasted space.');
  } else {
    word = 'clean';
    headline = 'No problems found';
    exitCode = 0;
    s.push(
      v.dirty || v.corrupt
        ? 'Nothing is actually wrong; a repair only clears the flag.'
        : 'No problems were found. Nothing needs to be done.',
    );
  }
  return { word, headline, sentences: s, exitCode };
}

/** Corruptions QEMU counts for the given kinds (one per cluster for these refcount findings). */
function countedCorruptions(anomalies: readonly Anomaly[], kinds: string[]): number {
  let n = 0;
  for (const k of kinds) n += clustersOf(anomalies, k);
  return n;
}
