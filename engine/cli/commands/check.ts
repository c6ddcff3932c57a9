// `qcow2-doctor check`: qemu-img check's flags, streams, texts and exit codes, plus our anomalies
// in the JSON output. Repairs (-r and friends) are handed to the repair engine.
import { reasonOf, salvageHint } from '../input-errors.js';
import type { Command } from 'commander';
import type { FileIO } from '../../io/file-io.js';
import { openInputFile } from '../../io/input-file.js';
import { Qcow2FormatError } from '../../base/errors.js';
import { checkImage, openForCheck } from '../../check/run.js';
import { BITMAPS_LEAK_HINT } from '../../check/analyze.js';
import type { RepairMode } from '../../check/types.js';
import { QCOW2_MAGIC } from '../../format/constants.js';
import { u32 } from '../../format/bytes.js';
import { humanSummary, qemuJson } from '../../check/qemu-text.js';
import { lostTablesParagraph } from '../../contract/verdict.js';
import type { RepairCommandArgs } from './repair-command.js';

interface CheckFlags {
  output: string;
  format?: string;
  quiet?: boolean;
  forceShare?: boolean;
  repair?: string;
  recordLog?: string;
  dryRun?: boolean;
  cautious?: boolean;
  journal?: string | boolean;
  outputImage?: string;
  report?: string;
  cache?: string;
  imageOpts?: boolean;
  object?: string[];
}

/** `--image-opts`: QEMU's key=value image description; we need only the file name. */
export function fileFromImageOpts(opts: string): string | undefined {
  // Values may contain ",," for a literal comma, as in QEMU's option syntax.
  const parts = opts
    .replaceAll(',,', '\u0000')
    .split(',')
    .map((p) => p.replaceAll('\u0000', ','));
  for (const p of parts) {
    const eq = p.indexOf('=');
    const key = eq < 0 ? '' : p.slice(0, eq);
    if (key === 'file.filename' || key === 'filename' || key === 'file') return p.slice(eq + 1);
  }
  return undefined;
}

/** Buffered line writer for millions of per-problem lines. */
class LineSink {
  private buf = '';
  constructor(private readonly fd: 1 | 2) {}
  line(s: string): void {
    this.buf += s === BITMAPS_LEAK_HINT ? s : `${s}\n`;
    if (this.buf.length > 1 << 16) this.flush();
  }
  flush(): void {
    if (!this.buf) return;
    (this.fd === 1 ? process.stdout : process.stderr).write(this.buf);
    this.buf = '';
  }
}

const fail = (text: string, code = 1): number => {
  process.stderr.write(`qcow2-doctor: ${text}\n`);
  return code;
};

export async function runCheck(given: string, o: CheckFlags): Promise<number> {
  let file = given;
  if (o.imageOpts) {
    const name = fileFromImageOpts(given);
    if (name === undefined) return fail(`Could not open '${given}': The 'file' block driver requires a file name`);
    file = name;
  }
  if (o.output !== 'human' && o.output !== 'json') return fail('--output must be used with human or json as argument.');
  if (o.repair !== undefined && o.repair !== 'leaks' && o.repair !== 'all')
    return fail(`Unknown option value for -r (expecting 'leaks' or 'all'): ${o.repair}`);
  const wantsRepair =
    o.repair !== undefined ||
    o.dryRun ||
    o.cautious ||
    o.journal !== undefined ||
    o.outputImage !== undefined ||
    o.recordLog !== undefined;
  if (o.format !== undefined && o.format !== 'qcow2') {
    if (o.format === 'raw') return fail('This image format does not support checks', 63);
    return fail(`Could not open '${given}': Unknown driver '${o.format}'`);
  }
  if (wantsRepair) {
    const args: RepairCommandArgs = {
      image: file,
      output: o.output,
      quiet: !!o.quiet,
      forceShare: !!o.forceShare,
      dryRun: !!o.dryRun,
      cautious: !!o.cautious,
    };
    if (o.format === 'qcow2') args.format = 'qcow2';
    if (o.repair) args.mode = o.repair as RepairMode;
    if (o.journal !== undefined && o.journal !== true) args.journal = o.journal;
    if (o.outputImage !== undefined) args.outputImage = o.outputImage;
    if (o.report !== undefined) args.report = o.report;
    if (o.recordLog !== undefined) args.recordLog = o.recordLog;
    // Loaded on demand: a plain check stays free of the repair engine's start-up cost.
    const { runRepairCommand } = await import('./repair-command.js');
    return runRepairCommand(args);
  }
  let io: FileIO;
  try {
    io = await openInputFile(file, { syncReads: true });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reason = reasonOf(err) ?? err.message;
    // A folder is said once, as every other command says it; qemu-img's doubled text otherwise.
    if (err.code === 'EISDIR') return fail(`Could not open '${given}': ${reason}`);
    return fail(`Could not open '${given}': Could not open '${file}': ${reason}`);
  }
  try {
    const head = await io.read(0, 8);
    const isQcow2 = head.length >= 8 && u32(head, 0) === QCOW2_MAGIC && u32(head, 4) >= 2;
    if (!isQcow2 && o.format === undefined) {
      const hint = await salvageHint(file);
      const code = fail('This image format does not support checks', 63);
      if (hint) process.stderr.write(`qcow2-doctor: ${hint}\n`);
      return code;
    }
    let image;
    try {
      image = await openForCheck(io);
    } catch (e) {
      if (e instanceof Qcow2FormatError) return fail(`Could not open '${given}': ${e.message}`);
      throw e;
    }
    const err = new LineSink(2);
    const result = await checkImage(image, {
      onMessage: (line) => err.line(line.startsWith('qemu-img: ') ? `qcow2-doctor: ${line.slice(10)}` : line),
    });
    err.flush();
    if (result.failed !== undefined) {
      return result.failedAtOpen
        ? fail(`Could not open '${given}': ${result.failed}`)
        : fail(`Check failed: ${result.failed}`);
    }
    const c = result.counters;
    if (!o.quiet) {
      if (o.output === 'json') process.stdout.write(qemuJson(given, c, result.anomalies));
      else process.stdout.write(humanSummary(c) + lostTablesParagraph(result.anomalies));
    }
    if (o.report !== undefined) {
      const { writeReportFile } = await import('../../report/write-report.js');
      await writeReportFile(o.report, { ...result, filename: given }, image);
    }
    if (c.checkErrors) return fail('Check failed');
    return c.corruptions ? 2 : c.leaks ? 3 : 0;
  } finally {
    await io.close();
  }
}

export function register(program: Command): void {
  program
    .command('check')
    .description("check an image for inconsistencies, as 'qemu-img check' does (plus plain-language findings)")
    .argument('<image>', 'qcow2 image file')
    .option('--output <format>', "'human' or 'json'", 'human')
    .option('-f <format>', 'image format (only qcow2 is checked)')
    .option('-q, --quiet', 'print nothing on stdout')
    .option('-U, --force-share', 'open even if another process uses the image (checking is read-only anyway)')
    .option('-T, --cache <mode>', 'accepted for qemu-img compatibility; ignored')
    .option('--image-opts', 'treat IMAGE as QEMU image options (driver=qcow2,file.filename=PATH,...)')
    .option(
      '--object <def>',
      'accepted for qemu-img compatibility (secrets are not needed: metadata is never encrypted)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('-r, --repair <mode>', "repair: 'leaks' or 'all'")
    .option('--dry-run', 'with -r: show what would be repaired, change nothing')
    .option(
      '--cautious',
      'with -r all: refuse, rather than drop, pointers to data nothing can read (unaligned or past the end of the file)',
    )
    .option('--journal <file>', 'with -r: where to keep the undo journal')
    .option('--no-journal', 'with -r: keep no undo journal')
    .option('--output-image <copy>', 'with -r: repair a copy, leave the original untouched')
    .option('--record-log <log>', 'with -r: log every write (dm-log-writes) to LOG, the image before to LOG.base.qcow2')
    .option('--report <file>', 'also write a report file')
    .action(async (image: string, opts: CheckFlags & { f?: string }) => {
      if (opts.f !== undefined) opts.format = opts.f;
      process.exitCode = await runCheck(image, opts);
    });
}
