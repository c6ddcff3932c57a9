// The salvage report for people: what was recovered from where, what is missing, what was guessed.
import type { PlacedRange, SalvageReport, ViewReport } from './types.js';

const hx = (n: number): string => `0x${n.toString(16)}`;

const PLACED: Record<PlacedRange['how'], string> = {
  'from-l1': 'from the L1 table',
  'from-snapshot-l1': "from the snapshot's L1 table",
  'by-evidence': 'by file system evidence',
  'by-elimination': 'by elimination',
  'by-guess': 'BY GUESS',
};

export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function formatSalvageReport(r: SalvageReport): string {
  const out: string[] = [];
  out.push(`Salvage of ${r.image} (${humanSize(r.fileSize)})`);
  out.push(`  header: ${r.header}${r.headerDamage && r.header !== 'intact' ? ` (${r.headerDamage})` : ''}`);
  out.push(
    `  cluster size: ${r.clusterSize} (${r.clusterSizeSource}); virtual size: ${r.virtualSize} (${humanSize(r.virtualSize)}, ${r.virtualSizeSource})`,
  );
  out.push(`  compression: ${r.compression}${r.extendedL2 ? '; extended L2 entries' : ''}`);
  const c = r.scan.counts;
  out.push(
    `  scan: ${r.scan.clusters} clusters${r.scan.complete ? '' : ' (incomplete)'} — ` +
      Object.entries(c)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${k}`)
        .join(', '),
  );
  const s = r.structures;
  out.push(
    `  tables: ${s.l1Tables.length} L1-like, ${s.l2Tables} L2-like, ${s.refcountTables.length} refcount-table-like, ${s.refcountBlocks} refcount-block-like`,
  );
  if (s.activeL1) out.push(`  active L1: ${hx(s.activeL1.offset)} (from ${s.activeL1.source}, ${s.activeL1.state})`);
  else out.push('  active L1: not found');
  if (s.snapshotTable)
    out.push(
      `  snapshot table: ${hx(s.snapshotTable.offset)} (from ${s.snapshotTable.source}, ${s.snapshotTable.entries} entries)`,
    );
  if (r.backing) {
    out.push(
      `  backing file: ${r.backing.file}${r.backing.format ? ` (${r.backing.format})` : ''}: ${r.backing.found ? 'found' : 'MISSING — unallocated clusters written as zeros'}`,
    );
  }
  for (const v of r.views) out.push('', ...formatView(v));
  const others = r.disks.filter((d) => !r.views.some((v) => v.kind === d.kind && v.id === d.id));
  if (others.length) {
    out.push('', 'Other disks in this image (export with --snapshot ID, or --snapshot all):');
    for (const d of others) out.push(`  ${d.id}: ${d.name}, ${humanSize(d.virtualSize)}`);
  }
  if (r.lostFound) {
    out.push(
      '',
      `Lost and found: ${r.lostFound.clusters} unreferenced cluster(s), ${humanSize(r.lostFound.bytes)} → ${r.lostFound.file}`,
    );
    for (const run of r.lostFound.runs.slice(0, 10))
      out.push(`  host ${hx(run.host)}..${hx(run.host + run.length)} → ${hx(run.at)}`);
    if (r.lostFound.runs.length > 10 || r.lostFound.runsCapped) out.push('  … (all runs in the JSON report)');
  }
  if (r.guesses.length) {
    out.push('', 'Guesses:');
    for (const g of r.guesses) out.push(`  - ${g}`);
  }
  if (r.warnings.length) {
    out.push('', 'Warnings:');
    for (const w of r.warnings) out.push(`  - ${w}`);
  }
  if (r.outcome) out.push('', `Outcome: ${r.outcome.words}`);
  return `${out.join('\n')}\n`;
}

function formatView(v: ViewReport): string[] {
  const out: string[] = [];
  const title = v.kind === 'active' ? 'Active disk' : `Snapshot ${v.id} (${v.name})`;
  out.push(`${title}: ${humanSize(v.virtualSize)}${v.output ? ` → ${v.output} (${v.format})` : ''}`);
  out.push(
    `  L1 from ${v.l1Source}${v.l1Offset !== undefined ? ` at ${hx(v.l1Offset)}` : ''}; ${v.l2Tables.length} L2 table(s) placed`,
  );
  const b = v.bytes;
  out.push(
    `  recovered ${humanSize(b.recovered)} of data${b.compressed ? ` (${humanSize(b.compressed)} from compressed clusters)` : ''}; ` +
      `${humanSize(b.zero)} zero/unallocated; ${humanSize(b.backing)} from the backing file`,
  );
  if (b.backingMissing)
    out.push(
      `  ${humanSize(b.backingMissing)} unallocated: they read from a backing file that is missing, or whose name was lost with the header (written as zeros)`,
    );
  if (b.guessed)
    out.push(
      `  ${humanSize(b.guessed)} placed by guess (${(v.confidence * 100).toFixed(1)}% of the recovered bytes are at a certain position)`,
    );
  const guessed = v.l2Tables.filter((p) => p.confidence < 1);
  for (const p of guessed.slice(0, 20))
    out.push(`    L2 table ${hx(p.host)} → L1 index ${p.l1Index} (${p.source}, confidence ${p.confidence})`);
  if (guessed.length > 20) out.push(`    … ${guessed.length - 20} more`);
  if (v.placement.length) {
    out.push('  how each mapped guest range was placed:');
    for (const r of v.placement.slice(0, 20))
      out.push(
        `    guest ${hx(r.start)}..${hx(r.end)}: ${PLACED[r.how]}${r.how === 'by-guess' ? ` (confidence ${r.confidence})` : ''} — ${r.detail}`,
      );
    if (v.placement.length > 20) out.push(`    … ${v.placement.length - 20} more ranges (all in the JSON report)`);
  }
  if (b.lost) {
    out.push(`  LOST ${humanSize(b.lost)} (written as zeros):`);
    for (const l of v.lost.slice(0, 20)) out.push(`    guest ${hx(l.start)}..${hx(l.end)}: ${l.reason}`);
    if (v.lost.length > 20) out.push(`    … ${v.lost.length - 20} more ranges`);
  } else if (b.backingMissing) {
    out.push("  nothing lost from this file; the backing file's data is not in the output:");
    for (const l of v.lost.slice(0, 20)) out.push(`    guest ${hx(l.start)}..${hx(l.end)}: ${l.reason}`);
    if (v.lost.length > 20) out.push(`    … ${v.lost.length - 20} more ranges`);
  } else if (b.guessed) out.push('  no range known lost, but the data placed by guess may be at the wrong offset');
  else out.push('  nothing lost');
  return out;
}
