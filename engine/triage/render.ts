// Triage output: the table a support engineer reads, and one JSON object per image for scripts.
import { qemuJsonObject } from '../check/qemu-text.js';
import { formatBytes, formatSeconds } from '../contract/units.js';
import { VERDICT_WORDS, type ImageTriage, type Verdict } from './types.js';

// LOST: lost tables that still map data (QEMU counts them among the leaks): data at risk.
const HEADINGS = ['PATH', 'VERDICT', 'LEAKS', 'LOST', 'ERRORS', 'FLAGS', 'VIRTUAL', 'FILE', 'BACKING', 'TIME'];
const RIGHT = new Set([2, 3, 4, 6, 7, 9]);

/** Lost tables found (one finding each). */
const lostTables = (r: ImageTriage): number => r.findings['lost-table'] ?? 0;

export function triageCells(r: ImageTriage): string[] {
  const flags = [r.dirty ? 'dirty' : '', r.corrupt ? 'corrupt' : ''].filter(Boolean).join(',') || '-';
  return [
    r.path,
    VERDICT_WORDS[r.verdict],
    r.counters ? String(r.counters.leaks) : '-',
    r.counters ? String(lostTables(r)) : '-',
    r.counters ? String(r.counters.corruptions) : '-',
    flags,
    r.virtualSize !== undefined ? formatBytes(r.virtualSize) : '-',
    formatBytes(r.fileSize),
    r.backingChain.length ? r.backingChain.join(' -> ') : '-',
    formatSeconds(r.elapsed),
  ];
}

/** The table, a line per problem that needs words, and a closing count per verdict. */
export function triageTable(rows: readonly ImageTriage[], skipped = 0): string {
  const cells = [HEADINGS, ...rows.map(triageCells)];
  const widths = HEADINGS.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string =>
    c
      .map((v, i) => (i === c.length - 1 ? v : RIGHT.has(i) ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = cells.map(line);
  const notes = rows.filter((r) => r.error !== undefined);
  if (notes.length) {
    out.push('');
    for (const r of notes) out.push(`${r.path}: ${r.error}`);
  }
  out.push('', summaryLine(rows, skipped));
  return `${out.join('\n')}\n`;
}

export function summaryLine(rows: readonly ImageTriage[], skipped = 0): string {
  const order: Verdict[] = ['clean', 'leaks', 'corrupt', 'unreadable', 'not-qcow2'];
  const parts = order
    .map((v) => [v, rows.filter((r) => r.verdict === v).length] as const)
    .filter(([, n]) => n > 0)
    .map(([v, n]) => `${n} ${v === 'leaks' ? 'with leaks' : VERDICT_WORDS[v]}`);
  const skip = skipped ? ` (${skipped} other files in the folders were not qcow2 and were skipped)` : '';
  return `${rows.length} image${rows.length === 1 ? '' : 's'}: ${parts.join(', ') || 'none'}${skip}`;
}

/** One line of JSON: QEMU's check fields (same names as `qemu-img check --output=json`) + ours. */
export function triageJson(r: ImageTriage): string {
  const o: Record<string, unknown> = r.counters ? qemuJsonObject(r.path, r.counters) : { filename: r.path };
  Object.assign(o, {
    path: r.path,
    verdict: r.verdict,
    'exit-code': r.exitCode,
    'dirty-flag': r.dirty,
    'corrupt-flag': r.corrupt,
    version: r.version,
    'virtual-size': r.virtualSize,
    'cluster-size': r.clusterSize,
    'file-size': r.fileSize,
    'backing-chain': r.backingChain,
    'lost-tables': lostTables(r),
    findings: r.findings,
    time: Number(r.elapsed.toFixed(3)),
  });
  if (r.content !== undefined) o.content = r.content;
  if (r.error !== undefined) o.error = r.error;
  return JSON.stringify(o);
}

/** The triage's exit code: 1 if any image is unreadable or not qcow2, else 2 if any is corrupt,
 * else 3 if any leaks, else 0 (the precedence qemu-img check uses for one image). */
export function triageExitCode(rows: readonly ImageTriage[]): number {
  if (rows.some((r) => r.verdict === 'unreadable' || r.verdict === 'not-qcow2')) return 1;
  if (rows.some((r) => r.verdict === 'corrupt')) return 2;
  if (rows.some((r) => r.verdict === 'leaks')) return 3;
  return 0;
}
