// The checker's passes over one image, in QEMU's order: the bitmaps and snapshot table as QEMU
// loads them at open, calculate_refcounts (walk-*, refblocks-pass), compare_refcounts
// (compare-pass), check_oflag_copied (copied-pass) — qemu-img check without -r, with QEMU's messages,
// but reading every table once in large sorted reads — then our own diagnostics. The result is the
// raw material for the QEMU report (check/qemu-text.ts), for our anomalies, and for the repair planner.
import type { Qcow2Image } from '../image/qcow2-image.js';
import { checkCompressedSamples, extraHeaderFindings, nameReferrers } from './beyond-qemu.js';
import type { BitmapDirectory } from './bitmaps.js';
import { calculateRefcounts } from './calculate-pass.js';
import { compareRefcounts } from './compare-pass.js';
import { checkOflagCopied, scanCopiedClear } from './copied-pass.js';
import type { EntryFinding } from './entry-finding.js';
import { Imrt } from './imrt.js';
import { reportLostTables } from './lost-tables-pass.js';
import { MAX_IMRT_BYTES } from './refcount-array.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import { CheckAbort, CheckState } from './state.js';
import type { Anomaly, CheckOptions, QemuCounters } from './types.js';
import { openBitmaps } from './walk-bitmaps.js';
import { snapshotPrecheck } from './walk-snapshots.js';

export type { EntryFinding } from './entry-finding.js';
export { BITMAPS_LEAK_HINT } from './walk-bitmaps.js';

/** What the checker's passes found in one image. Stable API for the repair planner: extend, don't change. */
export interface CheckAnalysis {
  clusterSize: number;
  fileSize: number;
  /** ceil(fileSize / clusterSize). */
  fileClusters: number;
  /** QEMU's nb_clusters after the walk: the range compared (file clusters, grown by references < 1 cluster past EOF). */
  nbClusters: number;
  /**
   * References found per host cluster (QEMU's IMRT), one byte per cluster. For refcount widths up to
   * 8 bits the byte is the count; for wider refcounts 255 means "255 or more, see referencesAt(k)"
   * (such counts are rare, and this halves QEMU's memory for the default 16-bit width).
   */
  references: Uint8Array;
  /** Exact reference count of host cluster k (any width). */
  referencesAt(k: number): number;
  /** Largest value a counter can hold (refcount overflow threshold). */
  refcountMax: number;
  /** QEMU's counters for a check without repair (corruptions/leaks/check errors, stats, end offset). */
  counters: QemuCounters;
  /** QEMU's "rebuild" flag: the refcount structure itself is broken (refcount 0 with references, bad reftable entries). */
  rebuild: boolean;
  /** Per-entry findings with exact locations (capped; `findingsDropped` counts the rest). */
  findings: EntryFinding[];
  findingsDropped: number;
  /** Snapshots as the pre-check read them. */
  snapshots: CheckedSnapshot[];
  /** QEMU's snapshots_size (unpadded end of the last entry). */
  snapshotTableSize: number;
  bitmaps?: BitmapDirectory;
  /** Last cluster with a non-zero refcount or reference (0 if none, as in QEMU). */
  highestCluster: number;
  /** QEMU's "Check failed: <reason>" (the check stopped early); counters are partial then. */
  failed?: string;
  /** The failure is one QEMU reports while opening ("Could not open ...: <reason>"). */
  failedAtOpen?: boolean;
  anomalies: Anomaly[];
  roleMap?: Uint8Array;
  guestMap?: Uint8Array;
  /** Messages in QEMU's order, as printed (also streamed through opts.onMessage). Capped. */
  messages: string[];
  /** L2 entries the walks handled one at a time: the checker's per-entry work, bounded by what the file holds. */
  entriesVisited: number;
}

/** Run the checker's passes over an opened image (never writes). */
export async function runCheckPasses(image: Qcow2Image, opts: CheckOptions = {}): Promise<CheckAnalysis> {
  const state = new CheckState(image, opts);
  let failed: string | undefined;
  let failedAtOpen = false;
  try {
    await runPasses(state);
  } catch (e) {
    if (e instanceof CheckAbort) {
      failed = e.reason;
      failedAtOpen = e.atOpen;
    } else throw e;
  }
  state.progress(1, 'done');
  return toAnalysis(state, failed, failedAtOpen);
}

async function runPasses(state: CheckState): Promise<void> {
  // A caller that can cancel gets its messages handled before the walk starts: reads are
  // synchronous, and the walk yields only every few milliseconds.
  if (state.opts.cancel) {
    await new Promise((resolve) => setImmediate(resolve));
    state.checkCancel();
  }
  state.counters.totalClusters = state.guestClusters;
  await openBitmaps(state);
  await snapshotPrecheck(state);
  if (state.fileClusters > 0x7fffffff) {
    state.counters.checkErrors++;
    throw new CheckAbort('File too large');
  }
  const entries = state.fileClusters + 2;
  if (entries > MAX_IMRT_BYTES) {
    state.counters.checkErrors++;
    throw new CheckAbort('Cannot allocate memory');
  }
  state.allocate(new Imrt(entries), entries);
  state.estimateWork();
  await calculateRefcounts(state);
  await compareRefcounts(state);
  scanCopiedClear(state);
  await checkOflagCopied(state);
  state.counters.imageEndOffset = (state.highest + 1) * state.clusterSize;
  extraHeaderFindings(state);
  await checkCompressedSamples(state);
  await reportLostTables(state);
  if (state.opts.explainReferrers !== false) await nameReferrers(state);
}

function toAnalysis(state: CheckState, failed: string | undefined, failedAtOpen: boolean): CheckAnalysis {
  const a: CheckAnalysis = {
    clusterSize: state.clusterSize,
    fileSize: state.fileSize,
    fileClusters: state.fileClusters,
    nbClusters: state.nbClusters(),
    referencesAt: (k) => state.refAt(k),
    refcountMax: state.refMax,
    // Written out in full only when someone asks for the whole array.
    get references(): Uint8Array {
      return state.imrt ? state.imrt.dense() : new Uint8Array(0);
    },
    counters: state.counters,
    rebuild: state.rebuild,
    findings: state.findings,
    findingsDropped: state.findingsDropped,
    snapshots: state.snapshots,
    snapshotTableSize: state.snapshotTableSize,
    highestCluster: state.highest,
    anomalies: state.anomalies.finish(),
    messages: state.messages,
    entriesVisited: state.entriesVisited,
  };
  if (state.bitmapDir) a.bitmaps = state.bitmapDir;
  if (failed !== undefined) a.failed = failed;
  if (failedAtOpen) a.failedAtOpen = true;
  if (state.roleMap) a.roleMap = state.roleMap;
  if (state.guestMap) a.guestMap = state.guestMap;
  return a;
}
