// The whole repair command, `qcow2-doctor check -r leaks|all` with `--dry-run`, `--journal`,
// `--no-journal`, `--output-image`, `--cautious`: hands the image to the repair engine and prints the
// outcome. Streams, texts and exit codes follow `qemu-img check -r`; our own notes (journal path,
// deliberate differences, refused parts, dropped pointers, guest ranges lost) go to stderr prefixed
// "qcow2-doctor:".
import type { RepairMode } from '../../check/types.js';
import { toCheckResult } from '../../check/index.js';
import { Qcow2FormatError } from '../../base/errors.js';
import { openInputFile } from '../../io/input-file.js';
import { Qcow2Image } from '../../image/qcow2-image.js';
import { humanSummary, qemuJsonObject, repairedBlock } from '../../check/qemu-text.js';
import { writeReportFile } from '../../report/write-report.js';
import { LogRecording } from '../../lab/dm-log-recorder.js';
import { describeRange, planToJson, planToText, repairFile, RepairRefusedError } from '../../repair/index.js';
import { refuseFailed, refuseUnopenable, refuseWithoutHeader } from './repair-not-qcow2.js';
import { residueLines } from './repair-residue.js';

/**
 * Everything `qcow2-doctor check` was given when a repair was requested. The check command calls
 * `runRepairCommand` instead of checking when any of -r/--repair, --dry-run, --journal,
 * --no-journal or --output-image is present, and sets `process.exitCode` to the number returned.
 */
export interface RepairCommandArgs {
  /** The image path exactly as given on the command line (QEMU prints it back as "filename"). */
  image: string;
  /** -r/--repair: 'leaks' or 'all' (validated by the check command); undefined when only
   * --dry-run / --journal / --output-image were given. */
  mode?: RepairMode;
  /** -f: 'qcow2' skips the format probe (a file without a qcow2 header then fails to open, as in QEMU). */
  format?: 'qcow2';
  /** --output: 'human' (QEMU's summary text) or 'json' (QEMU's JSON + our anomalies). */
  output: 'human' | 'json';
  /** -q/--quiet: suppress stdout (QEMU still prints the per-problem lines on stderr). */
  quiet: boolean;
  /** -U/--force-share (QEMU refuses it together with -r: "force-share=on can only be used with read-only images"). */
  forceShare: boolean;
  /** --dry-run: plan and print what would change, write nothing. */
  dryRun: boolean;
  /** --cautious: refuse, rather than drop, pointers to data nothing can read. */
  cautious?: boolean;
  /** --journal FILE: where to keep the undo journal; false for --no-journal; undefined = default location. */
  journal?: string | false;
  /** --output-image COPY: repair a copy at COPY and leave the original untouched. */
  outputImage?: string;
  /** --report FILE: also write a report (engine/report/write-report.ts). */
  report?: string;
  /** --record-log LOG: log every write as dm-log-writes to LOG, the image before the repair to LOG.base.qcow2. */
  recordLog?: string;
}

/**
 * The image is clean after the repair, but guest data is lost: ranges it names (they read as zeros
 * or from the backing file now), or data it freed whose guest position is unknown. Not the 0 that
 * says nothing was lost (QEMU's codes 1-3 describe what is left in the image, and nothing is).
 */
export const DATA_LOST_EXIT = 4;

/** Control bytes from the image (a damaged snapshot ID, say) are shown escaped, never sent to the terminal. */
function printable(s: string): string {
  let out = '';
  for (const c of s) {
    const code = c.charCodeAt(0);
    out += (code < 0x20 && c !== '\t' && c !== '\n') || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }
  return out;
}

const say = (s: string): void => {
  process.stderr.write(`qcow2-doctor: ${printable(s)}\n`);
};

/**
 * Run the repair and return the process exit code (QEMU's: 0 clean, 1 failed, 2 corruptions left,
 * 3 leaks left; ours: 4 clean, but guest data lost: named ranges, or freed at unknown positions).
 */
export async function runRepairCommand(args: RepairCommandArgs): Promise<number> {
  const out = (s: string): void => {
    if (!args.quiet) process.stdout.write(s);
  };
  if (args.forceShare && !args.dryRun) {
    say('force-share=on can only be used with read-only images');
    return 1;
  }
  const mode: RepairMode | undefined = args.mode ?? (args.dryRun ? 'all' : undefined);
  if (mode === undefined) {
    say('--journal, --no-journal, --output-image and --cautious need -r leaks|all');
    return 1;
  }
  if (args.recordLog !== undefined && args.dryRun) {
    say('--record-log goes with a repair that writes, not with --dry-run');
    return 1;
  }
  if (args.format === undefined) {
    // Before anything is created (a copy, a journal, a write log): a file QEMU does not take for qcow2.
    const refused = await refuseWithoutHeader(args.image, say);
    if (refused !== undefined) return refused;
  }
  const rec = args.recordLog !== undefined ? new LogRecording(args.recordLog, true) : undefined;
  if (rec) {
    try {
      await rec.refuseExisting();
    } catch (e) {
      say((e as Error).message);
      return 1;
    }
  }
  let stderrBuf = '';
  const flushErr = (): void => {
    if (stderrBuf) {
      process.stderr.write(stderrBuf);
      stderrBuf = '';
    }
  };
  let outcome;
  try {
    outcome = await repairFile({
      image: args.image,
      mode,
      dryRun: args.dryRun,
      ...(args.cautious ? { cautious: true } : {}),
      ...(args.journal !== undefined ? { journal: args.journal } : {}),
      ...(args.outputImage !== undefined ? { outputImage: args.outputImage } : {}),
      ...(rec ? { wrapIO: rec.wrap } : {}),
      onMessage: (line) => {
        stderrBuf += `${line.startsWith('qemu-img: ') ? `qcow2-doctor: ${line.slice(10)}` : line}\n`;
        if (stderrBuf.length > 1 << 16) flushErr();
      },
    });
  } catch (e) {
    flushErr();
    if (e instanceof RepairRefusedError) {
      say(e.message);
      return 1;
    }
    if (e instanceof Qcow2FormatError) {
      say(`Could not open '${args.image}': ${e.message}`);
      await refuseUnopenable(args.image, e.message, say);
      return 1;
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      say(`Could not open '${args.image}': No such file or directory`);
      return 1;
    }
    throw e;
  }
  flushErr();
  const { plan, before } = outcome;
  const filename = args.outputImage ?? args.image;
  if (before.failed !== undefined && (plan.failed !== undefined || args.dryRun)) {
    say(before.failedAtOpen ? `Could not open '${filename}': ${before.failed}` : `Check failed: ${before.failed}`);
    if (!args.dryRun) refuseFailed(filename, mode, `the check could not complete (${before.failed})`, say);
    return 1;
  }
  if (args.dryRun) {
    if (args.output === 'json')
      out(`${JSON.stringify({ plan: planToJson(plan), check: qemuJsonObject(filename, before.counters) }, null, 4)}\n`);
    else out(`${planToText(plan).join('\n')}\n`);
    if (plan.failed !== undefined) say(`-r ${mode} would fail: ${plan.failed}`);
    const c = before.counters;
    return c.checkErrors ? 1 : c.corruptions ? 2 : c.leaks ? 3 : 0;
  }
  if (plan.failed !== undefined) {
    process.stderr.write(`ERROR ${plan.failed}\n`);
    say('Check failed: Input/output error');
    refuseFailed(filename, mode, plan.failed, say);
    return 1;
  }
  for (const f of plan.fixes) if (f.qemuLine) process.stderr.write(`${f.qemuLine}\n`);
  for (const f of plan.fixes)
    if (f.kind === 'pointer-dropped') say(`dropped: ${f.text.replace('JOURNAL', outcome.journalPath ?? 'JOURNAL')}`);
    else if (f.differsFromQemu || f.explain) say(`note: ${f.text}`);
  for (const r of plan.refusals) say(`not repaired: ${r.what} — ${r.decide}`);
  const lost = plan.guestRangesLost ?? [];
  if (lost.length) {
    say(`guest data lost to the damage (now reads as zeros or from the backing file): ${lost.length} range(s)`);
    for (const r of lost) say(`  lost: guest ${describeRange(r)}`);
  }
  const unplaced = plan.dataLostUnplaced;
  if (unplaced)
    say(
      `guest data lost at positions nobody can tell: ${unplaced.clusters} freed cluster(s) (${unplaced.bytes} bytes) held data no entry places — exit code ${DATA_LOST_EXIT}`,
    );
  if (plan.fixes.some((f) => f.kind === 'pointer-dropped') && !outcome.journalPath)
    say('no undo journal was kept (--no-journal / --output-image): the dropped pointers are gone from this image');
  if (outcome.copyMethod)
    say(`repaired a copy (${outcome.copyMethod}) at ${outcome.target}; ${args.image} is unchanged`);
  if (rec) say(rec.summary());
  if (outcome.journalPath)
    say(`undo journal: ${outcome.journalPath} (undo with: qcow2-doctor undo ${outcome.journalPath})`);
  if (outcome.skippedPhases.includes('header'))
    say('the re-check still finds errors: the dirty/corrupt bits were left as they were');
  const after = outcome.after ?? before;
  const counters = { ...after.counters, leaksFixed: plan.leaksFixed, corruptionsFixed: plan.corruptionsFixed };
  for (const line of residueLines(counters, after.anomalies, mode, filename, outcome.journalPath)) say(line);
  if (args.output === 'json')
    out(
      `${JSON.stringify(
        {
          ...qemuJsonObject(filename, counters, after.anomalies),
          'guest-ranges-lost': lost,
          ...(unplaced ? { 'guest-data-lost-unplaced': { clusters: unplaced.clusters, bytes: unplaced.bytes } } : {}),
        },
        null,
        4,
      )}\n`,
    );
  else {
    if (counters.leaksFixed || counters.corruptionsFixed) out(repairedBlock(counters));
    out(humanSummary(counters));
  }
  if (args.report !== undefined) {
    const io = await openInputFile(outcome.target);
    try {
      const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
      await writeReportFile(args.report, toCheckResult(filename, { ...after, counters }, 0), img);
    } finally {
      await io.close();
    }
  }
  if (counters.checkErrors) {
    say('Check failed');
    return 1;
  }
  return counters.corruptions ? 2 : counters.leaks ? 3 : unplaced || lost.length ? DATA_LOST_EXIT : 0;
}
