// `qcow2-doctor lab --inject` (our writer) and `lab --qemu --inject` (QEMU's qcow2 driver under its
// blkdebug fault injector): each workload once per event it reaches, an EIO on the first request
// after the event, the workload goes on; the final image and every crash state of the log judged.
import { type InjectReport, QEMU_INJECT_EVENTS, runQemuInject } from '../../lab/qemu-inject.js';
import { knownQemuWorkloads } from '../../lab/qemu-lab.js';
import { labWorkloads } from '../../lab/workloads.js';
import { runWriterInject } from '../../lab/writer-inject.js';
import { WRITE_EVENTS } from '../../write/events.js';
import { replayFailures } from './lab-replay.js';

export interface InjectFlags {
  qemu?: boolean;
  workload?: string[];
  event?: string[];
  budget?: string;
  seed?: string;
  subsets?: string;
  torn?: string;
  json?: boolean;
  workDir?: string;
}

const finalText = (r: InjectReport): string =>
  r.final.unreadable !== undefined
    ? `UNREADABLE${r.final.corrupt || r.final.qemuCorruptions ? ', CORRUPT' : ''}`
    : metadataText(r);

const metadataText = (r: InjectReport): string =>
  r.final.qemuFailed
    ? 'check failed'
    : r.final.corrupt || r.final.qemuCorruptions
      ? `CORRUPT (${r.final.qemuCorruptions})`
      : r.final.qemuLeaks
        ? `${r.final.qemuLeaks} leaked`
        : 'clean';

export function injectTable(rows: InjectReport[]): string {
  const head = ['workload', 'event', 'step', 'log entries', 'states', 'corrupt', 'mismatches', 'leaky', 'final image'];
  const body = rows.map((r) => [
    r.workload,
    r.event,
    String(r.step),
    String(r.logEntries),
    r.states === r.statesPlanned ? String(r.states) : `${r.states}/${r.statesPlanned}`,
    String(r.corrupt),
    String(r.dataMismatches),
    String(r.leaky),
    finalText(r),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}

const count = (s: string | undefined, name: string, dflt: number): number => {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got '${s}')`);
  return n;
};

export const injectFailed = (r: InjectReport): boolean =>
  r.corrupt > 0 ||
  r.dataMismatches > 0 ||
  r.continueFailures > 0 ||
  r.final.corrupt ||
  r.final.qemuCorruptions > 0 ||
  r.final.unreadable !== undefined;

export async function runInject(o: InjectFlags): Promise<number> {
  const known = o.qemu ? knownQemuWorkloads() : labWorkloads().map((w) => w.name);
  for (const w of o.workload ?? [])
    if (!known.includes(w)) throw new Error(`unknown workload '${w}' (known: ${known.join(', ')})`);
  const events: readonly string[] = o.qemu ? QEMU_INJECT_EVENTS : WRITE_EVENTS;
  for (const e of o.event ?? [])
    if (!events.includes(e)) throw new Error(`unknown event '${e}' (known: ${events.join(', ')})`);
  const budget = o.budget === undefined ? 300 : Number(o.budget);
  if (!Number.isFinite(budget) || budget <= 0)
    throw new Error(`--budget must be a positive number of seconds (got '${o.budget}')`);
  if (o.workDir && !o.qemu) throw new Error('--work-dir goes with --qemu');
  const tty = process.stderr.isTTY === true;
  const opts = {
    budgetSeconds: budget,
    seed: count(o.seed, 'seed', 1),
    subsetsPerEpoch: count(o.subsets, 'subsets', 10),
    tornPerEpoch: count(o.torn, 'torn', 4),
    ...(o.workload?.length ? { workloads: o.workload } : {}),
    ...(o.event?.length ? { events: o.event } : {}),
    ...(o.workDir ? { keepDir: o.workDir } : {}),
    onProgress: (p: { workload: string; event: string; phase: string; done: number; total: number }) => {
      if (tty) process.stderr.write(`\r${`${p.phase} ${p.workload} ${p.event} ${p.done}/${p.total}`.padEnd(70)}`);
    },
  };
  const reports = o.qemu ? await runQemuInject(opts) : await runWriterInject(opts);
  if (tty) process.stderr.write(`\r${''.padEnd(70)}\r`);
  const who = o.qemu ? "QEMU's qcow2 driver (blkdebug)" : 'our writer (FaultIO)';
  if (o.json) process.stdout.write(`${JSON.stringify({ writer: o.qemu ? 'qemu' : 'ours', reports }, null, 2)}\n`);
  else {
    process.stdout.write(
      `error paths of ${who}: EIO once after each event reached (budget ${budget}s for the replays)\n\n${injectTable(reports)}\n`,
    );
    process.stdout.write(`\n${reports.length} workload x event pairs reached; step: where the error hit\n`);
    for (const r of reports.filter(injectFailed)) {
      process.stdout.write(`\n${r.workload} x ${r.event} (step ${r.step}: ${r.error}):\n`);
      for (const d of r.final.details) process.stdout.write(`  final image: ${d}\n`);
      if (r.failures.length) process.stdout.write(`${replayFailures(r)}\n`);
    }
  }
  return reports.some(injectFailed) ? 1 : 0;
}
