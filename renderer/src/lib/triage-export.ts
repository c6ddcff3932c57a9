/** The triage table as CSV, JSON and a standalone HTML page, with the verdict words the view shows. */
import type { TriageRow } from '../../../engine/contract/contract.js';

/** The verdict a person reads: a file without a qcow2 header says what it is instead. */
export function verdictLabel(r: TriageRow): string {
  if (r.verdict === 'not-qcow2') {
    if (r.content === 'damaged-header') return 'damaged qcow2 header (salvage)';
    if (r.content === 'raw-disk') return 'raw disk';
    if (r.content === 'not-disk') return 'not a disk image';
    return 'not qcow2';
  }
  if (r.verdict === 'leaks') return 'leaks only';
  if (r.verdict === 'in-use') return 'in use';
  return r.verdict;
}

/** A key for filtering: the verdict, refined for files without a qcow2 header. */
export function verdictKey(r: TriageRow): string {
  return r.verdict === 'not-qcow2' && r.content ? r.content : r.verdict;
}

const COLUMNS: Array<[string, (r: TriageRow) => string | number | boolean | undefined]> = [
  ['image', (r) => r.name],
  ['verdict', verdictLabel],
  ['corruptions', (r) => r.counters?.corruptions],
  ['leaks', (r) => r.counters?.leaks],
  ['dirty', (r) => r.dirty],
  ['corrupt_flag', (r) => r.corrupt],
  ['virtual_size', (r) => r.virtualSize],
  ['file_size', (r) => r.fileSize],
  ['backing_chain', (r) => r.backingChain?.join(' -> ')],
  ['seconds', (r) => (r.elapsed === undefined ? undefined : Number(r.elapsed.toFixed(3)))],
  ['summary', (r) => r.summary],
];

function csvCell(v: string | number | boolean | undefined): string {
  if (v === undefined) return '';
  const s = String(v);
  // Quote what needs it; a leading = + - @ would be read as a formula by spreadsheets.
  const safe = /^[=+\-@]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) || safe !== s ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function triageCsv(rows: readonly TriageRow[]): string {
  const lines = [COLUMNS.map(([h]) => h).join(',')];
  for (const r of rows) lines.push(COLUMNS.map(([, f]) => csvCell(f(r))).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

export function triageJsonText(rows: readonly TriageRow[]): string {
  return `${JSON.stringify(
    rows.map((r) => ({ ...r, verdictLabel: verdictLabel(r) })),
    null,
    2,
  )}\n`;
}

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function triageHtml(rows: readonly TriageRow[], when = new Date()): string {
  const head = COLUMNS.map(([h]) => `<th>${esc(h.replace(/_/g, ' '))}</th>`).join('');
  const body = rows
    .map((r) => `<tr>${COLUMNS.map(([, f]) => `<td>${esc(String(f(r) ?? ''))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qcow2-doctor triage</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#1b1e23}table{border-collapse:collapse}th,td{border:1px solid #d8dce2;padding:4px 8px;text-align:left}th{background:#eef1f5}</style>
</head><body><h1>qcow2-doctor triage</h1><p>${rows.length} images, ${esc(when.toISOString())}</p>
<table><thead><tr>${head}</tr></thead><tbody>
${body}
</tbody></table></body></html>
`;
}
