/**
 * The one verdict every view shows (header badge, Overview, wizard): the engine's plain verdict
 * for a check, plus the badge words and colour class derived from it, so they never disagree.
 */
import type { CheckSummary, Overview } from '../../../engine/contract/contract.js';
import { plainVerdict, type PlainVerdict } from '../../../engine/contract/verdict.js';

export function verdictOf(check: CheckSummary, ov: Overview | undefined): PlainVerdict {
  return plainVerdict({
    counters: check.counters,
    anomalies: [],
    dirty: ov?.dirty ?? false,
    corrupt: ov?.corrupt ?? false,
    ...(check.failed !== undefined ? { failed: check.failed } : {}),
  });
}

export const plural = (n: number, one: string, many: string): string =>
  `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/** The short badge text: the count that decides the verdict, in the checker's units. */
export function badgeText(v: PlainVerdict, check: CheckSummary): string {
  const c = check.counters;
  if (check.failed !== undefined) return 'check failed';
  if (v.word === 'clean') return 'no errors';
  if (v.word === 'leaks') return plural(c.leaks, 'leaked cluster', 'leaked clusters');
  if (v.word === 'unreadable') return 'check incomplete';
  if (c.corruptions > 0) return plural(c.corruptions, 'corruption', 'corruptions');
  return v.headline;
}

/** ok / warn / bad: the colour of a verdict (words added later read as bad until told otherwise). */
export function verdictTone(word: string): 'ok' | 'warn' | 'bad' {
  return word === 'clean' ? 'ok' : word === 'leaks' ? 'warn' : 'bad';
}
