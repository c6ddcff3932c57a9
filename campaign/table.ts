// The campaign's table: per damage kind, how many cases, what QEMU's repair and ours keep of the
// guest data, bytes lost that QEMU keeps, false claims, refusals, and undetectable damage.
import type { CaseResult } from './judge.js';

export interface Row {
  cases: number;
  qemuKept: number;
  oursKept: number;
  lostVsQemuBytes: number;
  lostVsQemuCases: number;
  falseClaimCases: number;
  refused: number;
  undetectable: number;
  uncleanSilent: number;
}

export interface Summary {
  byKind: Record<string, Row>;
  total: Row;
}

const empty = (): Row => ({
  cases: 0,
  qemuKept: 0,
  oursKept: 0,
  lostVsQemuBytes: 0,
  lostVsQemuCases: 0,
  falseClaimCases: 0,
  refused: 0,
  undetectable: 0,
  uncleanSilent: 0,
});

function add(row: Row, r: CaseResult): void {
  row.cases++;
  row.qemuKept += r.qemuKeptBytes;
  row.oursKept += r.oursKeptBytes;
  row.lostVsQemuBytes += r.lostVsQemu;
  if (r.lostVsQemu > 0) row.lostVsQemuCases++;
  if (r.falseClaims.length > 0) row.falseClaimCases++;
  if (r.refused) row.refused++;
  if (r.undetectable) row.undetectable++;
  if (r.notes.length > 0) row.uncleanSilent++;
}

export function summarise(results: CaseResult[]): Summary {
  const byKind: Record<string, Row> = {};
  const total = empty();
  for (const r of results) {
    byKind[r.kind] ??= empty();
    add(byKind[r.kind]!, r);
    add(total, r);
  }
  return { byKind, total };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

export function formatTable(s: Summary): string {
  const head =
    '| damage | cases | guest data kept: qemu-img / ours | lost vs qemu-img (cases) | false claims | refused | undetectable | not clean, no refusal |';
  const lines = [head, '|---|---|---|---|---|---|---|---|'];
  const row = (name: string, r: Row): string =>
    `| ${name} | ${r.cases} | ${mib(r.qemuKept)} / ${mib(r.oursKept)} | ${r.lostVsQemuBytes} B (${r.lostVsQemuCases}) | ${r.falseClaimCases} | ${r.refused} | ${r.undetectable} | ${r.uncleanSilent} |`;
  for (const k of Object.keys(s.byKind).sort()) lines.push(row(k, s.byKind[k]!));
  lines.push(row('**all**', s.total));
  return lines.join('\n');
}
