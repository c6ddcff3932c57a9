// The plain-language verdict: what a frightened non-expert reads first ("Your image was not closed
// cleanly. 12 clusters are leaked: wasted space, no harm to your data. ..."). Pure: used by the
// reports, the CLI and the recovery wizard alike (no node: imports here).
import type { Anomaly, QemuCounters } from './findings.js';

/** The coarse word the renderer colours by (kept for its callers); `state` says more. */
export type VerdictWord = 'clean' | 'leaks' | 'corrupt' | 'unreadable';

/**
 * The one verdict model, most serious first: the check could not read everything; tables that still
 * map data are orphaned (QEMU calls them leaks); tables are damaged; the refcounts put data in use at
 * risk of being overwritten; only leaked space; nothing wrong.
 */
export type VerdictState = 'unreadable' | 'lost-tables' | 'corrupt' | 'data-at-risk' | 'leaks-only' | 'clean';

/** The state in plain words, for badges, headings and report columns. */
export const VERDICT_STATE_TITLES: Record<VerdictState, string> = {
  unreadable: 'Could not be checked completely',
  'lost-tables': 'Lost tables: data at risk',
  corrupt: 'Corrupt',
  'data-at-risk': 'Data at risk',
  'leaks-only': 'Only leaked space',
  clean: 'Clean',
};

export interface PlainVerdict {
  word: VerdictWord;
  /** The one verdict (see VerdictState); `word` is its coarse colour. */
  state: VerdictState;
  /** VERDICT_STATE_TITLES[state]. */
  title: string;
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
  const lost = lostTablesSummary(v.anomalies);
  if (lost) s.push(lost.sentence);
  const orphaned = clustersOf(v.anomalies, 'orphaned-data');
  if (c.leaks > 0 && !lost && orphaned > 0)
    s.push(
      `${plural(c.leaks, 'cluster is', 'clusters are')} leaked; ${plural(orphaned, 'of them still holds', 'of them still hold')} data no table maps any more: possibly guest data a damaged table lost.`,
    );
  else if (c.leaks > 0 && !lost)
    s.push(`${plural(c.leaks, 'cluster is', 'clusters are')} leaked: wasted space, no harm to your data.`);
  else if (c.leaks > 0)
    s.push(
      `QEMU counts ${plural(c.leaks, 'cluster', 'clusters')} as leaked; the lost tables and the data they map are among them, so these are not only wasted space.`,
    );
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
  let state: VerdictState;
  let headline: string;
  let exitCode: PlainVerdict['exitCode'];
  if (v.failed !== undefined || c.checkErrors > 0) {
    word = 'unreadable';
    state = 'unreadable';
    headline = 'The image could not be checked completely';
    exitCode = 1;
    s.push(
      'Do not write to the image. Work on a copy: a repair may rebuild what cannot be read, or salvage can copy the guest data out.',
    );
  } else if (lost) {
    word = 'corrupt';
    state = 'lost-tables';
    headline = 'Data is at risk: do not repair leaks';
    exitCode = c.corruptions > 0 ? 2 : c.leaks > 0 ? 3 : 0; // QEMU's: it may see nothing wrong at all
    s.push(LOST_TABLES_ADVICE);
  } else if (c.corruptions > 0) {
    word = 'corrupt';
    state = otherCorruptions(c, v.anomalies) > 0 ? 'corrupt' : 'data-at-risk';
    headline = 'Repair is recommended';
    exitCode = 2;
    s.push('Repair is recommended before the image is used again. Repairing a copy keeps the original untouched.');
  } else if (c.leaks > 0 && orphaned > 0) {
    word = 'leaks';
    state = 'data-at-risk';
    headline = 'Leaked clusters may still hold your data';
    exitCode = 3;
    s.push(ORPHANED_DATA_ADVICE);
  } else if (c.leaks > 0) {
    word = 'leaks';
    state = 'leaks-only';
    headline = 'Only wasted space';
    exitCode = 3;
    s.push('Your data is safe. Repairing the leaks is optional: it frees the wasted space.');
  } else {
    word = 'clean';
    state = 'clean';
    headline = 'No problems found';
    exitCode = 0;
    s.push(
      v.dirty || v.corrupt
        ? 'Nothing is actually wrong; a repair only clears the flag.'
        : 'No problems were found. Nothing needs to be done.',
    );
  }
  return { word, state, title: VERDICT_STATE_TITLES[state], headline, sentences: s, exitCode };
}

/** What to do about leaked clusters that still hold data. */
export const ORPHANED_DATA_ADVICE =
  'Copy the data out with `qcow2-doctor salvage` before anything frees these clusters; `qcow2-doctor check -r leaks` keeps them; `-r all` and `qemu-img check -r leaks` free them.';

/** What to do about lost tables, in one sentence (the CLI, the reports and the app say the same). */
export const LOST_TABLES_ADVICE =
  'Do not repair leaks with `qemu-img check -r leaks`: it would free the lost tables and the data they map (`qcow2-doctor check -r leaks` keeps them, but brings nothing back). Run `qcow2-doctor check -r all` (it re-links lost tables where their place is certain) or `qcow2-doctor salvage` to copy the data out; work on a copy.';

/** Lost tables in the anomalies: how many, the bytes only they still map, and a sentence saying so. */
export function lostTablesSummary(
  anomalies: readonly Anomaly[],
): { tables: number; l2Tables: number; bytesAtRisk: number; sentence: string } | undefined {
  let tables = 0;
  let l2Tables = 0;
  let bytesAtRisk = 0;
  for (const a of anomalies) {
    if (a.kind !== 'lost-table') continue;
    tables++;
    if (a.lostTable?.table === 'l2') {
      l2Tables++;
      bytesAtRisk += a.lostTable.bytesAtRisk;
    }
  }
  if (tables === 0) return undefined;
  const what =
    l2Tables === tables
      ? plural(tables, 'lost L2 table', 'lost L2 tables')
      : plural(tables, 'lost table', 'lost tables');
  const sentence = `${what} still ${tables === 1 ? 'maps' : 'map'} ${mib(bytesAtRisk)} of data that nothing else refers to: the data is at risk.`;
  return { tables, l2Tables, bytesAtRisk, sentence };
}

/** The paragraph the CLI prints after QEMU's summary when there are lost tables or orphaned data ('' otherwise). */
export function lostTablesParagraph(anomalies: readonly Anomaly[]): string {
  const lost = lostTablesSummary(anomalies);
  if (lost) return `\n${lost.sentence}\n${LOST_TABLES_ADVICE}\n`;
  // Leaked clusters that still hold data: the same paragraph, as QEMU's "no harm to data" is not true of them.
  const orphaned = clustersOf(anomalies, 'orphaned-data');
  if (!orphaned) return '';
  return `\n${plural(orphaned, 'leaked cluster still holds', 'leaked clusters still hold')} data no table maps any more: possibly guest data a damaged table lost.\n${ORPHANED_DATA_ADVICE}\n`;
}

function mib(bytes: number): string {
  const units = ['MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes / (1024 * 1024);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 10 ? Math.round(v) : Math.round(v * 10) / 10} ${units[u]}`;
}

/** Corruptions QEMU counts beyond the refcount findings that only put data at risk. */
function otherCorruptions(c: QemuCounters, anomalies: readonly Anomaly[]): number {
  return c.corruptions - countedCorruptions(anomalies, ['refcount-zero-referenced', 'refcount-too-low']);
}

/** Corruptions QEMU counts for the given kinds (one per cluster for these refcount findings). */
function countedCorruptions(anomalies: readonly Anomaly[], kinds: string[]): number {
  let n = 0;
  for (const k of kinds) n += clustersOf(anomalies, k);
  return n;
}
