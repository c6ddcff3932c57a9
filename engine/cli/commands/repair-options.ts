// The hand-over from `qcow2-doctor check` to the repair engine (issue 5).
// PLACEHOLDER body: the repair work replaces `runRepairCommand`'s body; keep the signature.
import type { RepairMode } from '../../check/types.js';

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
  /** --output: 'human' (QEMU's summary text) or 'json' (QEMU's JSON + our anomalies). */
  output: 'human' | 'json';
  /** -q/--quiet: suppress stdout (QEMU still prints the per-problem lines on stderr). */
  quiet: boolean;
  /** -U/--force-share (QEMU refuses it together with -r: "force-share=on can only be used with read-only images"). */
  forceShare: boolean;
  /** --dry-run: plan and print what would change, write nothing. */
  dryRun: boolean;
  /** --journal FILE: where to keep the undo journal; false for --no-journal; undefined = default location. */
  journal?: string | false;
  /** --output-image COPY: repair a copy at COPY and leave the original untouched. */
  outputImage?: string;
  /** --report FILE: also write a report (engine/report/write-report.ts). */
  report?: string;
}

/** Run the repair and return the process exit code (QEMU's: 0 clean, 1 failed, 2 corruptions left, 3 leaks left). */
export async function runRepairCommand(args: RepairCommandArgs): Promise<number> {
  void args;
  process.stderr.write('qcow2-doctor: repair is not available yet\n');
  return 1;
}
