// `qcow2-doctor lab --qemu`: crash-test QEMU's own qcow2 driver. Each workload runs through
// qemu-io/qemu-img with blklogwrites under the image file; its log is replayed and every crash
// state judged. `--control drop-flushes|no-flush` runs a negative control, which must fail.
import { type QemuControl, type QemuWorkloadReport, knownQemuWorkloads, runQemuLab } from '../../lab/qemu-lab.js';
import { replayFailures } from './lab-replay.js';

export interface QemuFlags {
  workload?: string[];
  budget?: string;
  seed?: string;
  subsets?: string;
  torn?: string;
  json?: boolean;
  control?: string;
  workDir?: string;
}

const CONTROLS: QemuControl[] = ['none', 'drop-flushes', 'no-flush'];

export function qemuTable(rows: QemuWorkloadReport[]): string {
  const head = [
    'workload',
    'log entries',
    'flushes',
    'states',
    'corrupt',
    'data mismatches',
    'leaky',
    'benign COPIED',
    'dirty',
    'continued',
  ];
  const body = rows.map((r) => [
    r.name,
    String(r.logEntries),
    String(r.flushes),
    r.states === r.statesPlanned ? String(r.states) : `${r.states}/${r.statesPlanned}`,
    String(r.corrupt),
    String(r.dataMismatches),
    String(r.leaky),
    String(r.copiedBenign),
    String(r.dirtyRepaired),
    `${r.continueTried - r.continueFailures}/${r.continueTried}${r.continueUnsupported ? ` (${r.continueUnsupported} n/a)` : ''}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}

const count = (s: string | undefined, name: string, dflt: number): number => {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got '${s}')`);
  return n;
};

export async function runQemu(o: QemuFlags): Promise<number> {
  const known = knownQemuWorkloads();
  for (const w of o.workload ?? [])
    if (!known.includes(w)) throw new Error(`unknown QEMU workload '${w}' (known: ${known.join(', ')})`);
  const control = (o.control ?? 'none') as QemuControl;
  if (!CONTROLS.includes(control))
    throw new Error(`--control must be one of ${CONTROLS.join(', ')} (got '${o.control}')`);
  const budget = o.budget === undefined ? 120 : Number(o.budget);
  if (!Number.isFinite(budget) || budget <= 0)
    throw new Error(`--budget must be a positive number of seconds (got '${o.budget}')`);
  const tty = process.stderr.isTTY === true;
  const reports = await runQemuLab({
    control,
    budgetSeconds: budget,
    seed: count(o.seed, 'seed', 1),
    subsetsPerEpoch: count(o.subsets, 'subsets', 30),
    tornPerEpoch: count(o.torn, 'torn', 10),
    ...(o.workload?.length ? { workloads: o.workload } : {}),
    ...(o.workDir ? { keepDir: o.workDir } : {}),
    onProgress: ({ workload, done, total }) => {
      if (tty) process.stderr.write(`\r${`${workload} ${done}/${total}`.padEnd(40)}`);
    },
  });
  if (tty) process.stderr.write(`\r${''.padEnd(40)}\r`);
  if (o.json) process.stdout.write(`${JSON.stringify({ control, reports }, null, 2)}\n`);
  else {
    const title = control === 'none' ? '' : `, negative control: ${control}`;
    process.stdout.write(`crash-consistency lab on QEMU (budget ${budget}s${title})\n\n${qemuTable(reports)}\n`);
    for (const r of reports)
      if (r.failures.length) process.stdout.write(`\n${r.name} (${r.what}):\n${replayFailures(r)}\n`);
    if (reports.some((r) => r.copiedBenign))
      process.stdout.write(
        '\nbenign COPIED: states where qemu-img check reports OFLAG_COPIED on a cluster with one reference (not counted as corrupt)\n',
      );
  }
  return reports.some((r) => r.corrupt || r.dataMismatches || r.continueFailures) ? 1 : 0;
}
