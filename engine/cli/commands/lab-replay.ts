// `qcow2-doctor lab --replay LOG --base BASE`: crash-test a write log recorded from any writer
// (dm-log-writes format, e.g. QEMU's blklogwrites) against the image as it was when logging began.
import { openInputFile } from '../../io/input-file.js';
import { BackingReaders } from '../../lab/backing-reader.js';
import { readDmLog } from '../../lab/dm-log.js';
import { type ReplayReport, replayLog } from '../../lab/replay.js';

export interface ReplayFlags {
  replay: string;
  base?: string;
  budget?: string;
  dumpStates?: string;
  json?: boolean;
  seed?: string;
  subsets?: string;
  torn?: string;
}

const MAX_BASE = 2 ** 30;

const count = (s: string | undefined, name: string, dflt: number): number => {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got '${s}')`);
  return n;
};

export function replaySummary(r: ReplayReport): string {
  const rows = [
    ['log entries', r.entries],
    ['flushes', r.flushes],
    ['discards', r.discards],
    ['states tried', `${r.states} of ${r.statesPlanned}`],
    ...(r.unpublished ? [['unpublished', `${r.unpublished} (a new file, invisible before its final flush)`]] : []),
    ['corrupt', r.corrupt],
    ['data mismatches', r.dataMismatches],
    ['leaky', r.leaky],
    ['benign COPIED', r.copiedBenign],
    ['dirty, repaired on open', r.dirtyRepaired],
    [
      'continued',
      `${r.continueTried - r.continueFailures}/${r.continueTried}${r.continueUnsupported ? ` (${r.continueUnsupported} not tried: our writer refuses the image)` : ''}`,
    ],
  ];
  return rows.map(([k, v]) => `${String(k).padEnd(24)}${v}`).join('\n');
}

export function replayFailures(r: ReplayReport): string {
  const out: string[] = [];
  for (const f of r.failures) {
    out.push(`FAILED state: ${f.state}`);
    out.push(`  entries in: ${f.entries}`);
    for (const p of f.problems) out.push(`  wrong: ${p}`);
    out.push(`  minimal: ${f.minimal}`);
    for (const e of f.minimalEntries) out.push(`    ${e}`);
  }
  return out.join('\n');
}

/** The base image, whole (the lab replays in memory); a regular file only. */
async function readBase(path: string): Promise<Uint8Array> {
  const io = await openInputFile(path);
  try {
    const size = await io.size();
    if (size > MAX_BASE) throw new Error(`--base ${path}: ${size} bytes, more than the lab holds (1 GiB)`);
    return await io.read(0, size);
  } finally {
    await io.close();
  }
}

export async function runReplay(o: ReplayFlags): Promise<number> {
  if (!o.base) throw new Error('--replay needs --base BASE (the image file as it was when logging began)');
  const budget = o.budget === undefined ? 60 : Number(o.budget);
  if (!Number.isFinite(budget) || budget <= 0)
    throw new Error(`--budget must be a positive number of seconds (got '${o.budget}')`);
  const base = await readBase(o.base);
  const logIo = await openInputFile(o.replay);
  const dm = await readDmLog(logIo).finally(() => logIo.close());
  const backing = new BackingReaders(o.base);
  try {
    const report = await replayLog(
      { base, log: dm.log, source: dm.source, openBacking: (n, f) => backing.reader(n, f) },
      {
        seed: count(o.seed, 'seed', 1),
        subsetsPerEpoch: count(o.subsets, 'subsets', 30),
        tornPerEpoch: count(o.torn, 'torn', 10),
        budgetSeconds: budget,
        ...(o.dumpStates ? { dumpDir: o.dumpStates } : {}),
      },
    );
    if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(
        `replay of ${o.replay} (${dm.entries} log entries) onto ${o.base}\n\n${replaySummary(report)}\n`,
      );
      if (report.failures.length) process.stdout.write(`\n${replayFailures(report)}\n`);
      if (o.dumpStates)
        process.stdout.write(`\n${report.dumped.length} crash-state images written to ${o.dumpStates}\n`);
    }
    return report.corrupt || report.dataMismatches || report.continueFailures ? 1 : 0;
  } finally {
    await backing.close();
  }
}
