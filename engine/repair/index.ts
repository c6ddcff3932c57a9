/**
 * The repair engine's public API (the CLI's `check -r`, `undo`, and the app's recovery wizard):
 *
 *   const plan = await planRepairFile(path, 'all');          // dry run: what would change, nothing written
 *   const out = await repairFile({ image: path, mode: 'all', onProgress });   // journal → ordered apply → verify
 *   out.verify.counters                                        // the re-check after the repair
 *   await undoRepair(out.journalPath!);                        // byte-for-byte back
 *
 * Every refusal (image in use, read-only, journal not writable, repair impossible in this mode) is a
 * RepairRefusedError with a one-line message, thrown before anything is written.
 */
import { type CheckAnalysis, runCheckPasses } from '../check/analyze.js';
import type { RepairMode } from '../check/types.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { openInputFile } from '../io/input-file.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';
import { applyPlan, StaleImageError } from './apply.js';
export { StaleImageError } from './apply.js';
import { copyImage, type CopyMethod } from './copy-image.js';
import {
  defaultJournalPath,
  interruptedRepairMessage,
  openJournalTarget,
  readJournal,
  undoFromJournal,
  writeJournal,
  type UndoResult,
} from './journal.js';
import { allWrites, isEmptyPlan, type RepairPlan } from './plan.js';
import { planLeaksFromCheck } from './leak-plan.js';
import { recheckLeakRepair } from './leak-recheck.js';
import { planRepair } from './planner.js';
import { inUseReason, journalUnwritableReason, notWritableReason } from './refusals.js';

export type { RepairPlan, PlannedWrite, PlanStep, Refusal, FixNote, Phase } from './plan.js';
export { planToJson, planToText, PHASES } from './plan.js';
export { describeRange } from './guest-ranges.js';
export type { GuestRange } from './plan.js';
export type { UndoResult } from './journal.js';
export type { CopyMethod } from './copy-image.js';

/** A refusal to touch the image: one line, nothing changed. */
export class RepairRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RepairRefusedError';
  }
}

/** How the repair decides (the CLI's flags, the wizard's choices). */
export interface RepairChoices {
  /**
   * Refuse instead of dropping a pointer to data nobody can read (an L2 entry whose data offset is
   * unaligned or past the end of the file). Default false: -r all drops such pointers, keeps their
   * bytes in the undo journal and names them. The wizard uses true as its default.
   */
  cautious?: boolean;
}

export interface RepairRequest extends RepairChoices {
  image: string;
  mode: RepairMode;
  /** Plan only; write nothing (no copy, no journal). */
  dryRun?: boolean;
  /** Undo journal path; false = none. Default: next to the image for in-place repairs, none for --output-image. */
  journal?: string | false;
  /** Repair a copy at this path (reflink if possible, else a sparse copy); the original is never opened for writing. */
  outputImage?: string;
  /** The folder the copy and the journal must be created in (serve: --root). */
  outputRoot?: string | undefined;
  onProgress?: ProgressSink;
  /** Honoured until the first write to the image. */
  cancel?: CancelToken;
  /** The checker's first-pass lines (QEMU's stderr lines), streamed. */
  onMessage?: (line: string) => void;
  /**
   * Apply exactly this plan (e.g. the one the user reviewed from planRepairFile) instead of planning
   * again. Every write is checked against the bytes the plan expects to replace; if the image changed
   * since, the repair stops with a StaleImageError before writing anything (or, mid-way, at a phase
   * boundary that leaves the image at worst leaky).
   */
  plan?: RepairPlan;
  /** Wrap the opened target before the repair uses it (e.g. to record every write: --record-log). */
  wrapIO?: (io: PositionalIO) => Promise<PositionalIO>;
}

export interface RepairOutcome {
  plan: RepairPlan;
  /** The file that was (or, for a dry run, would be) repaired. */
  target: string;
  /** The checker's analysis before the repair (QEMU's first pass). */
  before: CheckAnalysis;
  /** The re-check after the repair (absent for dry runs and refusals). */
  after?: CheckAnalysis;
  journalPath?: string;
  copyMethod?: CopyMethod;
  applied: boolean;
  /** Phases skipped (the final header phase is skipped when the re-check still finds corruption). */
  skippedPhases: string[];
}

async function analyze(
  io: PositionalIO,
  onMessage?: (l: string) => void,
  onProgress?: ProgressSink,
  cancel?: CancelToken,
): Promise<CheckAnalysis> {
  const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  return runCheckPasses(img, {
    ...(onMessage ? { onMessage } : {}),
    ...(onProgress ? { onProgress } : {}),
    ...(cancel ? { cancel } : {}),
  });
}

/** Dry run: the plan for `path` in `mode`. Opens read-only; writes nothing. */
export async function planRepairFile(path: string, mode: RepairMode, choices: RepairChoices = {}): Promise<RepairPlan> {
  const io = await openInputFile(path);
  try {
    const before = await analyze(io);
    return await planFor(io, path, mode, before, choices);
  } finally {
    await io.close();
  }
}

async function planFor(
  io: PositionalIO,
  name: string,
  mode: RepairMode,
  before: CheckAnalysis,
  choices: RepairChoices,
): Promise<RepairPlan> {
  // Leaks alone (unreferenced, zero-filled): the checker's walk is all the plan needs.
  const fast = await planLeaksFromCheck(io, before, mode, name);
  if (fast) return fast;
  const plan = await planRepair(io, {
    mode,
    name,
    anomalies: before.anomalies,
    ...(choices.cautious ? { cautious: true } : {}),
  });
  // QEMU's -r leaks stops when the refcount structure needs a rebuild; the checker's flag is QEMU's.
  if (mode === 'leaks' && before.rebuild && plan.failed === undefined) {
    return { ...plan, steps: [], failed: 'need to rebuild refcount structures', leaksFixed: 0, corruptionsFixed: 0 };
  }
  return plan;
}

/** Check a file read-only (the wizard's "verify" step). */
export async function verifyFile(path: string): Promise<CheckAnalysis> {
  const io = await openInputFile(path);
  try {
    return await analyze(io);
  } finally {
    await io.close();
  }
}

/**
 * Plan, journal, apply in order, re-check. In place unless `outputImage`. Throws RepairRefusedError
 * (nothing written) when the image is in use, read-only, or the journal cannot be written.
 */
export async function repairFile(req: RepairRequest): Promise<RepairOutcome> {
  let target = req.image;
  let copyMethod: CopyMethod | undefined;
  if (!req.dryRun) {
    if (req.outputImage === undefined) {
      const reason = (await inUseReason(req.image)) ?? (await notWritableReason(req.image));
      if (reason) throw new RepairRefusedError(reason);
    }
  }
  const journalPath = req.dryRun
    ? undefined
    : req.journal === false
      ? undefined
      : (req.journal ?? (req.outputImage === undefined ? defaultJournalPath(req.image) : undefined));
  if (journalPath !== undefined) {
    const reason = await journalUnwritableReason(journalPath);
    if (reason) throw new RepairRefusedError(reason);
  }
  if (!req.dryRun && req.outputImage !== undefined) {
    try {
      copyMethod = await copyImage(req.image, req.outputImage, req.outputRoot);
    } catch (e) {
      throw new RepairRefusedError((e as Error).message);
    }
    target = req.outputImage;
  }

  const file = await openInputFile(target, { write: !req.dryRun });
  let io: PositionalIO = file;
  try {
    if (req.wrapIO) io = await req.wrapIO(file);
    const r = await repairIO(io, {
      mode: req.mode,
      name: target,
      ...(req.dryRun ? { dryRun: true } : {}),
      ...(journalPath !== undefined ? { journal: { path: journalPath, imagePath: target, root: req.outputRoot } } : {}),
      ...(req.onProgress ? { onProgress: req.onProgress } : {}),
      ...(req.cancel ? { cancel: req.cancel } : {}),
      ...(req.onMessage ? { onMessage: req.onMessage } : {}),
      ...(req.plan ? { plan: req.plan } : {}),
      ...(req.cautious ? { cautious: true } : {}),
    });
    return { ...r, target, ...(copyMethod ? { copyMethod } : {}) };
  } finally {
    await io.close();
  }
}

export interface RepairIOOptions extends RepairChoices {
  mode: RepairMode;
  name: string;
  dryRun?: boolean;
  /** Write the undo journal (for the file `imagePath`) before the first write. */
  journal?: { path: string; imagePath: string; root?: string | undefined };
  onProgress?: ProgressSink;
  cancel?: CancelToken;
  onMessage?: (line: string) => void;
  /** Passed to applyPlan (tests and the crash lab look at every barrier). */
  onBarrier?: (phase: string) => Promise<void> | void;
  /** Apply this plan instead of planning again (see RepairRequest.plan). */
  plan?: RepairPlan;
}

/**
 * The repair on any PositionalIO (a file, a memory buffer, the crash lab's recorder): first-pass
 * analysis, plan, journal, ordered apply, re-check (the corrupt and dirty bits are cleared only if
 * the re-check finds no corruption).
 */
export async function repairIO(io: PositionalIO, o: RepairIOOptions): Promise<Omit<RepairOutcome, 'target'>> {
  // Progress: the first-pass check is the first 30 %, the ordered writes the rest.
  const before = await analyze(
    io,
    o.onMessage,
    o.onProgress ? (e) => o.onProgress!({ fraction: 0.3 * e.fraction, stage: `check: ${e.stage}` }) : undefined,
    o.cancel,
  );
  let plan: RepairPlan;
  if (o.plan) {
    if (o.plan.originalLength !== (await io.size()))
      throw new StaleImageError(0, `file length (${o.plan.originalLength} when planned)`);
    plan = o.plan;
  } else if (before.failed !== undefined) {
    // QEMU's -r all repairs one case the plain check aborts on: snapshot extra data over 1024 bytes.
    const p =
      o.mode === 'all' && !before.failedAtOpen
        ? await planRepair(io, { mode: o.mode, name: o.name, ...(o.cautious ? { cautious: true } : {}) }).catch(
            () => undefined,
          )
        : undefined;
    // Its other refusals are printed as on any image: the rewritten table lets the image open again.
    if (!p?.fixes.some((f) => f.kind === 'snapshot-extra-truncated')) {
      return { plan: await failedPlan(io, o.name, o.mode, before.failed), before, applied: false, skippedPhases: [] };
    }
    plan = p;
  } else {
    plan = await planFor(io, o.name, o.mode, before, o);
  }
  if (o.dryRun || plan.failed !== undefined || isEmptyPlan(plan)) {
    const after = !o.dryRun && plan.failed === undefined ? before : undefined;
    return { plan, before, ...(after ? { after } : {}), applied: false, skippedPhases: [] };
  }
  o.cancel?.throwIfCancelled();
  if (o.journal !== undefined) {
    try {
      await writeJournal(o.journal.path, o.journal.imagePath, io, allWrites(plan), o.journal.root);
    } catch (e) {
      throw new RepairRefusedError((e as Error).message);
    }
  }
  let after: CheckAnalysis | undefined;
  const res = await applyPlan(io, plan, {
    ...(o.onProgress ? { onProgress: (e) => o.onProgress!({ fraction: 0.3 + 0.7 * e.fraction, stage: e.stage }) } : {}),
    ...(o.cancel ? { cancel: o.cancel } : {}),
    ...(o.onBarrier ? { onBarrier: o.onBarrier } : {}),
    beforePhase: async (phase) => {
      if (phase !== 'header') return true;
      after = await analyze(io);
      return after.counters.corruptions === 0 && after.counters.checkErrors === 0 && after.failed === undefined;
    },
  }).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) throw e;
    throw Object.assign(new Error(interruptedRepairMessage(e, o.journal?.path)), { code });
  });
  if (after && !res.skipped.includes('header') && plan.steps.some((s) => s.phase === 'header' && s.writes.length))
    // The re-check ran before the last phase cleared the dirty and corrupt bits: they are gone now.
    after = { ...after, anomalies: after.anomalies.filter((a) => a.kind !== 'dirty-bit' && a.kind !== 'corrupt-bit') };
  // After a leak-only repair, only the refcount blocks it wrote are read again.
  after ??= (await recheckLeakRepair(io, before, plan)) ?? (await analyze(io));
  return {
    plan,
    before,
    after,
    applied: true,
    skippedPhases: res.skipped,
    ...(o.journal !== undefined ? { journalPath: o.journal.path } : {}),
  };
}

async function failedPlan(io: PositionalIO, name: string, mode: RepairMode, reason: string): Promise<RepairPlan> {
  const len = await io.size();
  return {
    image: name,
    mode,
    clusterSize: 0,
    originalLength: len,
    steps: [],
    fixes: [],
    refusals: [],
    rebuild: false,
    expected: { remainingCorruptions: 0, remainingLeaks: 0, fileLength: len },
    leaksFixed: 0,
    corruptionsFixed: 0,
    guestRangesLost: [],
    failed: reason,
  };
}

/**
 * Undo a repair from its journal: verifies the journal's checksums, refuses if the image holds
 * bytes the repair never wrote (unless `force`), restores every region and the original length.
 */
export async function undoRepair(
  journalPath: string,
  opts: { image?: string; force?: boolean } = {},
): Promise<UndoResult & { image: string }> {
  const j = await readJournal(journalPath);
  const image = opts.image ?? j.meta.image;
  const reason = (await inUseReason(image).catch(() => undefined)) ?? (await notWritableReason(image));
  if (reason) throw new RepairRefusedError(reason);
  const io = await openJournalTarget(j.meta, image);
  try {
    const r = await undoFromJournal(j, io, opts.force ? { force: true } : {});
    return { ...r, image };
  } finally {
    await io.close();
  }
}
