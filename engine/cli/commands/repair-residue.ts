// What a repair that did not end clean says about what it left: one "not repaired:" line with the
// counts the re-check still finds, then each remaining finding (its QEMU line, the structure and
// entry, what would fix it), then the way forward. Without it a non-zero exit would leave the user
// with QEMU's counters alone and no word on why the repair stopped short.
import type { RepairMode } from '../../check/types.js';
import type { Anomaly, QemuCounters, Referrer } from '../../contract/findings.js';

/** Findings listed one by one; the rest are counted (the JSON output lists them all). */
const LISTED = 8;

const hex = (n: number): string => `0x${n.toString(16)}`;

function whereOf(r: Referrer): string {
  const parts = [r.kind === 'header' ? 'the header' : r.table !== undefined ? `${r.kind} at ${hex(r.table)}` : r.kind];
  if (r.index !== undefined) parts.push(`entry ${r.index}`);
  if (r.guestOffset !== undefined) parts.push(`guest ${hex(r.guestOffset)}`);
  if (r.snapshotId !== undefined) parts.push(`snapshot ${r.snapshotId}`);
  return parts.join(', ');
}

function lineOf(a: Anomaly): string {
  const what = a.qemuMessage ?? a.kind;
  const where: string[] = [];
  if (a.referrers?.[0]) where.push(whereOf(a.referrers[0]));
  if (a.firstCluster !== undefined)
    where.push(
      a.count > 1 ? `clusters ${a.firstCluster}–${a.firstCluster + a.count - 1}` : `cluster ${a.firstCluster}`,
    );
  else if (a.count > 1) where.push(`${a.count} of them`);
  return `  left: ${what}${where.length ? ` (${where.join('; ')})` : ''} — ${a.fix}`;
}

/** Plain shell quoting for a path shown in a command line. */
function quoted(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
}

/**
 * The lines (without the "qcow2-doctor: " prefix) for a repair whose re-check is not clean; none
 * when it is. `image` is the file the re-check read; `journal` the undo journal, when one was kept.
 */
export function residueLines(
  counters: QemuCounters,
  anomalies: readonly Anomaly[],
  mode: RepairMode,
  image: string,
  journal: string | undefined,
): string[] {
  const errors = counters.corruptions;
  const leaks = counters.leaks;
  const failed = counters.checkErrors;
  if (!errors && !leaks && !failed) return [];
  const counts = [
    errors ? `${errors} error(s)` : '',
    leaks ? `${leaks} leaked cluster(s)` : '',
    failed ? `${failed} check error(s)` : '',
  ].filter(Boolean);
  const why =
    mode === 'leaks' && errors
      ? '-r leaks repairs leaked clusters only; `check -r all` repairs the errors'
      : 'these are the parts the repair could not fix with certainty (refused above, or left as QEMU leaves them)';
  const out = [`not repaired: the re-check still finds ${counts.join(', ')} — ${why}`];
  const left = anomalies.filter((a) => a.severity === 'error' || a.severity === 'leak' || a.kind === 'lost-table');
  for (const a of left.slice(0, LISTED)) out.push(lineOf(a));
  if (left.length > LISTED) out.push(`  … and ${left.length - LISTED} more (--output=json lists them all)`);
  const undo = journal ? `; \`qcow2-doctor undo ${quoted(journal)}\` puts the original bytes back` : '';
  out.push(
    mode === 'leaks' && errors
      ? `  way forward: \`qcow2-doctor check -r all --dry-run ${quoted(image)}\` shows every write the full repair would make`
      : `  way forward: copy the data out with \`qcow2-doctor salvage ${quoted(image)} recovered.raw\` before writing to the image${undo}`,
  );
  return out;
}
