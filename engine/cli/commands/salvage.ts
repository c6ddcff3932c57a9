import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { salvageImage } from '../../salvage/salvage.js';
import { formatSalvageReport } from '../../salvage/report-text.js';
import { CancelToken, type ProgressSink } from '../../base/task-control.js';
import { CancelledError } from '../../base/errors.js';
import { LogRecording } from '../../lab/dm-log-recorder.js';

/** `qcow2-doctor salvage IMAGE OUT`: recover the guest disk(s) of a badly damaged image into new files. */
export function register(program: Command): void {
  program
    .command('salvage')
    .description('recover the guest data of a damaged image into a new file (never modifies IMAGE)')
    .addHelpText(
      'after',
      [
        '',
        'Exit status:',
        "  0  recovered; every recovered byte's position is certain (read from surviving metadata,",
        '     or pinned by a structure in the data that records its own offset); nothing lost',
        '  2  recovered with losses: some guest ranges are lost (written as zeros; listed in the report)',
        '  4  recovered; some data was placed in the disk by guess (the report says which ranges and how sure)',
        '  6  both: ranges lost, and some data placed by guess',
        '  1  error; 130 interrupted',
      ].join('\n'),
    )
    .argument('<image>', 'the damaged qcow2 file (opened read-only)')
    .argument('[out]', 'output file (omit with --dry-run)')
    .option('-f, --format <fmt>', 'output format: raw (sparse) or qcow2', 'raw')
    .option(
      '--snapshot <id|name|all>',
      "export a snapshot's disk instead of the active one; 'all' exports every disk (OUT.snapshot-ID)",
    )
    .option('--report <file>', 'write the JSON report to FILE')
    .option('--json', 'print the JSON report instead of the human one')
    .option('--resume <statefile>', 'save scan progress to STATEFILE and resume from it (Ctrl-C stops and saves)')
    .option('--cluster-size <bytes>', 'cluster size, when the header is lost and you know it')
    .option('--virtual-size <bytes>', 'virtual disk size, when the header is lost and you know it')
    .option('--backing <file>', 'backing file to use (default: the one the header names)')
    .option('--no-backing', 'ignore any backing file (unallocated clusters read as zeros)')
    .option('--place-orphans', 'also place L2 tables no L1 entry references when the active L1 looks intact')
    .option(
      '--lost-found <file>',
      'also copy every non-zero cluster nothing refers to into FILE (host order; map in the report)',
    )
    .option('--force', 'replace OUT if it exists (never the image or its backing file)')
    .option('--dry-run', 'scan and report only; write no output')
    .option('--record-log <log>', 'with -f qcow2: log every write to OUT (dm-log-writes) to LOG, with an empty base')
    .action(async (image: string, out: string | undefined, o: Record<string, string | boolean | undefined>) => {
      const format = String(o.format);
      if (format !== 'raw' && format !== 'qcow2') throw new Error(`--format must be raw or qcow2 (got ${format})`);
      if (!out && !o.dryRun) throw new Error('missing OUT (or use --dry-run)');
      if (o.recordLog !== undefined && (format !== 'qcow2' || o.dryRun || o.snapshot === 'all'))
        throw new Error('--record-log goes with -f qcow2 writing one output (not --dry-run, not --snapshot all)');
      const rec = typeof o.recordLog === 'string' ? new LogRecording(o.recordLog, false) : undefined;
      await rec?.refuseExisting();
      const num = (name: string, v: unknown): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isSafeInteger(n) || n <= 0)
          throw new Error(`--${name} must be a positive integer (got ${String(v)})`);
        return n;
      };
      const cancel = new CancelToken();
      const onSigint = (): void => cancel.cancel();
      process.once('SIGINT', onSigint);
      try {
        const report = await salvageImage(image, o.dryRun ? undefined : out, {
          format,
          snapshot: o.snapshot as string | undefined,
          resumeState: o.resume as string | undefined,
          clusterSize: num('cluster-size', o.clusterSize),
          virtualSize: num('virtual-size', o.virtualSize),
          backing: typeof o.backing === 'string' ? o.backing : undefined,
          noBacking: o.backing === false,
          placeOrphans: !!o.placeOrphans,
          overwrite: !!o.force,
          lostFound: o.lostFound as string | undefined,
          ...(rec ? { wrapOutput: rec.wrap } : {}),
          progress: progressBar(),
          cancel,
        });
        clearBar();
        await rec?.finish();
        if (rec) process.stderr.write(`qcow2-doctor: ${rec.summary()}\n`);
        if (o.report) await writeFile(String(o.report), `${JSON.stringify(report, null, 2)}\n`);
        process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatSalvageReport(report));
        process.exitCode = report.outcome?.exitCode ?? 0;
      } catch (e) {
        clearBar();
        if (e instanceof CancelledError) {
          process.stderr.write(
            o.resume
              ? `qcow2-doctor: scan stopped; run the same command again to resume from ${String(o.resume)}\n`
              : 'qcow2-doctor: salvage cancelled (use --resume STATEFILE to be able to continue a scan)\n',
          );
          process.exitCode = 130;
          return;
        }
        throw e;
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });
}

let barShown = false;

/** A one-line progress bar on a TTY (stderr); nothing otherwise. */
function progressBar(): ProgressSink | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (e) => {
    const now = Date.now();
    if (now - last < 100 && e.fraction < 1) return;
    last = now;
    const width = 30;
    const filled = Math.round(e.fraction * width);
    process.stderr.write(
      `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(e.fraction * 100).toFixed(1).padStart(5)}% ${e.stage.padEnd(24)}`,
    );
    barShown = true;
  };
}

function clearBar(): void {
  if (barShown) process.stderr.write('\r\x1b[K');
  barShown = false;
}
