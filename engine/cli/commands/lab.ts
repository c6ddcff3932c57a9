// `qcow2-doctor lab`: the crash-consistency campaign over the write path's workloads. Prints a
// table (workload, crash states tried, corruptions, data mismatches, the workload's own guest
// flushes apart from the flushes the write path issues to order metadata) and exits 1 when any
// state shows a corruption or a data mismatch.
import type { Command } from 'commander';
import { runCampaign, type WorkloadReport } from '../../lab/campaign.js';
import { labWorkloads } from '../../lab/workloads.js';
import type { WriteOrdering } from '../../write/table-cache.js';
import { runInject } from './lab-inject.js';
import { runQemu } from './lab-qemu.js';
import { recordLogs } from './lab-record.js';
import { runReplay } from './lab-replay.js';

interface LabFlags {
  replay?: string;
  base?: string;
  qemu?: boolean;
  inject?: boolean;
  event?: string[];
  control?: string;
  workDir?: string;
  recordLog?: string;
  budget?: string;
  dumpStates?: string;
  unordered?: boolean;
  seed?: string;
  subsets?: string;
  torn?: string;
  workload?: string[];
  json?: boolean;
}

function table(rows: WorkloadReport[]): string {
  const head = [
    'workload',
    'states',
    'corruptions',
    'data mismatches',
    'leaky',
    'benign COPIED',
    'continued',
    'alloc writes',
    'guest flushes',
    'ordering flushes',
    'ordering/1000 alloc',
  ];
  const body = rows.map((r) => [
    r.name,
    String(r.states),
    String(r.corruptions),
    String(r.dataMismatches),
    String(r.leaky),
    String(r.copiedBenign),
    `${r.continueTried - r.continueFailures}/${r.continueTried}`,
    String(r.allocatingWrites),
    String(r.guestFlushes),
    String(r.orderingFlushes),
    String(r.orderingFlushesPer1000AllocatingWrites),
  ]);
  const total = rows.reduce((a, r) => [a[0]! + r.states, a[1]! + r.corruptions, a[2]! + r.dataMismatches], [0, 0, 0]);
  body.push(['total', String(total[0]), String(total[1]), String(total[2]), ...head.slice(4).map(() => '')]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}

const positiveInt = (s: string | undefined, name: string, dflt: number): number => {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got '${s}')`);
  return n;
};

export async function runLab(o: LabFlags): Promise<number> {
  if (o.replay) return runReplay({ ...o, replay: o.replay });
  if (o.inject) return runInject(o);
  if (o.event) throw new Error('--event goes with --inject');
  if (o.qemu) return runQemu(o);
  if (o.control || o.workDir) throw new Error('--control and --work-dir go with --qemu');
  if (o.base) throw new Error('--base goes with --replay LOG');
  const budget = o.budget === undefined ? 120 : Number(o.budget);
  if (!Number.isFinite(budget) || budget <= 0)
    throw new Error(`--budget must be a positive number of seconds (got '${o.budget}')`);
  const known = labWorkloads().map((w) => w.name);
  for (const w of o.workload ?? [])
    if (!known.includes(w)) throw new Error(`unknown workload '${w}' (known: ${known.join(', ')})`);
  const ordering: WriteOrdering = o.unordered ? 'unordered' : 'ordered';
  if (o.recordLog) return recordLogs(o.recordLog, o.workload, ordering);
  const tty = process.stderr.isTTY === true;
  let last = 0;
  const reports = await runCampaign({
    ordering,
    seed: positiveInt(o.seed, 'seed', 1),
    subsetsPerEpoch: positiveInt(o.subsets, 'subsets', 200),
    tornPerEpoch: positiveInt(o.torn, 'torn', 100),
    budgetSeconds: budget,
    ...(o.dumpStates ? { dumpDir: o.dumpStates } : {}),
    ...(o.workload?.length ? { workloads: o.workload } : {}),
    onProgress: ({ workload, done, total }) => {
      const now = Date.now();
      if (now - last < 200 && done !== total) return;
      last = now;
      const width = 30;
      const filled = Math.round((done / Math.max(1, total)) * width);
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${workload} ${done}/${total}`;
      if (tty) process.stderr.write(`\r${bar.padEnd(70)}`);
      else if (done === total) process.stderr.write(`${bar}\n`);
    },
  });
  if (tty) process.stderr.write(`${'\r'.padEnd(72)}\r`);
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ ordering, reports }, null, 2)}\n`);
  } else {
    process.stdout.write(`crash-consistency lab (${ordering} write path, budget ${budget}s)\n\n${table(reports)}\n`);
    for (const r of reports) for (const f of r.failures) process.stdout.write(`\n${r.name}: ${f}`);
    if (reports.some((r) => r.failures.length)) process.stdout.write('\n');
    const dumped = reports.reduce((n, r) => n + r.dumped.length, 0);
    if (o.dumpStates) process.stdout.write(`\n${dumped} crash-state images written to ${o.dumpStates}\n`);
  }
  const bad = reports.some((r) => r.corruptions > 0 || r.dataMismatches > 0 || r.continueFailures > 0);
  return bad ? 1 : 0;
}

export function register(program: Command): void {
  program
    .command('lab')
    .description(
      'Crash-consistency lab: crash the write path at every point of its workloads and judge each crash state',
    )
    .option('--replay <log>', 'crash-test a dm-log-writes log (e.g. from QEMU blklogwrites) instead of our writer')
    .option('--base <image>', 'with --replay: the image file as it was when logging began')
    .option('--qemu', "crash-test QEMU's qcow2 driver: run its workloads under blklogwrites and replay the logs")
    .option(
      '--inject',
      'error paths: each workload once per fault-injection event it reaches (with --qemu: QEMU under blkdebug)',
    )
    .option('--event <name...>', 'with --inject: only these events (blkdebug names)')
    .option(
      '--control <kind>',
      'with --qemu: negative control, drop-flushes (log without flushes) or no-flush (QEMU cache.no-flush=on)',
    )
    .option('--work-dir <dir>', "with --qemu: keep each workload's images and log in DIR/WORKLOAD")
    .option(
      '--record-log <dir>',
      "write our workloads' writes as dm-log-writes logs (DIR/NAME.log, DIR/NAME.base.qcow2)",
    )
    .option('--budget <seconds>', 'time budget for the whole campaign (default 120, 60 with --replay)')
    .option('--dump-states <dir>', 'write a sample of crash-state images (qcow2) to this folder')
    .option('--unordered', 'negative control: drop the ordering barriers and dependencies (must report corruption)')
    .option('--seed <n>', 'seed of the random crash states', '1')
    .option('--subsets <n>', 'random subsets of in-flight writes per flush epoch (default 200, 30 with --replay)')
    .option('--torn <n>', 'random subsets with one torn write per flush epoch (default 100, 10 with --replay)')
    .option(
      '--workload <name...>',
      `only these workloads (${labWorkloads()
        .map((w) => w.name)
        .join(', ')})`,
    )
    .option('--json', 'print the reports as JSON')
    .action(async (o: LabFlags) => {
      process.exitCode = await runLab(o);
    });
}
