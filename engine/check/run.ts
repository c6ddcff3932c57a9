// Checking an opened image or a file (the worker-free core of the checker's entry points: the CLI
// imports this directly, so a plain `qcow2-doctor check` never loads node:worker_threads).
import type { FileIO } from '../io/file-io.js';
import { openInputFile } from '../io/input-file.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { type CheckAnalysis, runCheckPasses } from './analyze.js';
import type { CheckOptions, CheckResult } from './types.js';

/** Turn an analysis into the public result. */
export function toCheckResult(filename: string, a: CheckAnalysis, elapsed: number): CheckResult {
  const r: CheckResult = {
    filename,
    counters: a.counters,
    anomalies: a.anomalies,
    hostClusters: a.nbClusters,
    clusterSize: a.clusterSize,
    elapsed,
  };
  if (a.failed !== undefined) r.failed = a.failed;
  if (a.failedAtOpen) r.failedAtOpen = true;
  if (a.roleMap) r.roleMap = a.roleMap;
  if (a.guestMap) r.guestMap = a.guestMap;
  return r;
}

/**
 * Check an opened image as `qemu-img check` does (plus our extra diagnostics). `opts.repair` is
 * ignored here: repairs are planned and applied by engine/repair from an analysis.
 */
export async function checkImage(image: Qcow2Image, opts: CheckOptions = {}): Promise<CheckResult> {
  const t0 = performance.now();
  const a = await runCheckPasses(image, opts);
  return toCheckResult(image.io.name, a, (performance.now() - t0) / 1000);
}

/** Open `path` read-only in check mode (as qemu-img check opens it) and check it. */
export async function checkFile(path: string, opts: CheckOptions = {}): Promise<CheckResult> {
  const io = await openInputFile(path, { syncReads: true });
  try {
    const image = await openForCheck(io);
    return await checkImage(image, opts);
  } finally {
    await io.close();
  }
}

/** Open as QEMU's check does: no refcount table tolerated, tables past end of file read as zeros. */
export function openForCheck(io: FileIO | Parameters<typeof Qcow2Image.open>[0]): Promise<Qcow2Image> {
  return Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
}
