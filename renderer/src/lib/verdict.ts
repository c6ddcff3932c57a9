/**
 * The one verdict every view shows (header badge, Overview, wizard): the engine's plain verdict
 * for a check, plus the badge words and colour class derived from it, so they never disagree.
 */
import type { Anomaly, CheckSummary, Overview } from '../../../engine/contract/contract.js';
import { plainVerdict, type PlainVerdict } from '../../../engine/contract/verdict.js';

/** `lostTables`: the check's 'lost-table' findings (QEMU counts them as leaks; they are data at risk). */
export function verdictOf(
  check: CheckSummary,
  ov: Overview | undefined,
  lostTables: readonly Anomaly[] = [],
): PlainVerdict {
  return plainVerdict({
    counters: check.counters,
    anomalies: lostTables,
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
  if (v.state === 'lost-tables') {
    const lost = v.sentences.find((s) => / lost (L2 )?tables? still /.test(s));
    const n = Number(/^(\d+)/.exec(lost ?? '')?.[1] ?? 0);
    return n ? `${plural(n, 'lost table', 'lost tables')} · data at risk` : 'data at risk';
  }
  if (c.corruptions > 0) return plural(c.corruptions, 'corruption', 'corruptions');
  return v.headline;
}

/** ok / warn / bad: the colour of a verdict (words added later read as bad until told otherwise). */
export function verdictTone(word: string): 'ok' | 'warn' | 'bad' {
  return word === 'clean' ? 'ok' : word === 'leaks' ? 'warn' : 'bad';
}
