// The one state every pass of the checker works on: QEMU's counters, the reference table (IMRT),
// the anomaly builder, the findings, the messages in QEMU's order, the COPIED bookkeeping, the role
// and guest maps, and the options. The passes (walk-*, refblocks-pass, compare-pass, copied-pass)
// are functions over it; the counting primitives every walk shares live here.
import { CancelledError } from '../base/errors.js';
import { GuestState, HostRole } from '../contract/roles.js';
import { u32 } from '../format/bytes.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { AnomalyCollector } from './anomalies.js';
import { BufferPool } from '../image/traversal/batch-reads.js';
import type { BitmapDirectory } from './bitmaps.js';
import type { CompressedSample } from './compressed-sample.js';
import { type EntryFinding, referrerOf } from './entry-finding.js';
import type { Imrt } from './imrt.js';
import { msg } from './messages.js';
import { refArrayMax, WIDE_SENTINEL } from './refcount-array.js';
import { RefcountLookup } from './refcount-lookup.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import type { CheckOptions, QemuCounters } from './types.js';

const MAX_FINDINGS = 100000;
const MAX_KEPT_MESSAGES = 10000;
/** Bytes of tables read per batch (bounds memory; large enough for long sequential reads). */
export const BATCH_BYTES = 1024 * 1024;
export const TWO32 = 0x1_0000_0000;

/** A check failure that stops the walk (QEMU returns -errno). */
export class CheckAbort extends Error {
  constructor(
    readonly reason: string,
    readonly atOpen = false,
  ) {
    super(reason);
  }
}

export class CheckState {
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly fileSize: number;
  readonly fileClusters: number;
  readonly extendedL2: boolean;
  readonly dataFile: boolean;
  /** The reference counts' bytes (`imrt.bytes`), for the loops that read them as such. */
  refBytes!: Uint8Array;
  /** The reference counts found per host cluster (QEMU's IMRT). */
  imrt!: Imrt;
  readonly refMax: number;
  /** Counts of 255 and more, for refcount widths above 8 bits (the byte then holds WIDE_SENTINEL). */
  readonly wideCounts = new Map<number, number>();
  readonly wide: boolean;
  /** Counters below this are incremented inline; at or above it the slow path decides. */
  readonly fastLimit: number;
  /** Highest cluster referenced so far (QEMU grows nb_clusters to it). */
  maxReferenced = -1;
  /** QEMU's highest_cluster starts at 0 (so an image whose refcounts are all unreadable ends at 1 cluster). */
  highest = 0;
  readonly counters: QemuCounters = {
    checkErrors: 0,
    corruptions: 0,
    leaks: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
  };
  rebuild = false;
  readonly findings: EntryFinding[] = [];
  findingsDropped = 0;
  readonly messages: string[] = [];
  readonly anomalies = new AnomalyCollector();
  /** Clusters some active entry flags COPIED (one bit each). */
  copiedSet!: Uint8Array;
  /** Allocated on the first active reference without COPIED (images without snapshots never need it). */
  copiedClear: Uint8Array = new Uint8Array(0);
  copiedEntries = 0;
  /** Whether check_oflag_copied must re-walk the active tables (a disagreement is possible). */
  copiedReplay = false;
  anyCopiedClear = false;
  readonly compressedSamples: CompressedSample[] = [];
  roleMap?: Uint8Array;
  guestMap?: Uint8Array;
  readonly zeros: Uint8Array;
  /** Read arenas: a file is read into the first; other sources fill the second while a batch is walked. */
  readonly pools = [new BufferPool(BATCH_BYTES), new BufferPool(BATCH_BYTES)];
  snapshots: CheckedSnapshot[] = [];
  snapshotTableSize = 0;
  bitmapDir?: BitmapDirectory;
  workTotal = 1;
  workDone = 0;
  /** L2 entries handled one at a time (zero stretches and runs of plain data entries are skipped in bulk). */
  entriesVisited = 0;
  readonly lookup: RefcountLookup;
  private signalled = false;
  /** Metadata clusters claimed so far (for the metadata-overlap warning): cluster → role. */
  readonly metaRoles = new Map<number, number>();
  readonly guestClusters: number;
  /** Whether anyone waits on the event loop during the walk (progress, cancel). */
  readonly listened: boolean;
  // Per-L2-table state shared by the fast loop and the general entry handler.
  l2NextContig = 0;
  l2Allocated = 0;
  l2Fragmented = 0;
  /** A table copied here when its bytes are not word-aligned for the fast loop. */
  l2Scratch?: Uint8Array;

  constructor(
    readonly image: Qcow2Image,
    readonly opts: CheckOptions,
  ) {
    this.clusterSize = image.clusterSize;
    this.clusterBits = image.geo.clusterBits;
    this.fileSize = image.fileSize;
    this.fileClusters = Math.ceil(this.fileSize / this.clusterSize);
    this.extendedL2 = image.geo.extendedL2;
    this.dataFile = image.hasExternalData;
    this.refMax = refArrayMax(image.geo.refcountOrder);
    this.wide = image.geo.refcountOrder > 3;
    this.fastLimit = this.wide ? WIDE_SENTINEL - 1 : this.refMax;
    this.zeros = new Uint8Array(this.clusterSize);
    this.guestClusters = Math.ceil(image.virtualSize / this.clusterSize);
    this.listened = !!(opts.cancel || opts.onProgress);
    this.lookup = new RefcountLookup(image);
    this.lookup.onUnaligned = (rtIndex, off) => {
      if (this.signalled) return;
      this.signalled = true;
      this.say(msg.refblockSignal(off, rtIndex));
    };
  }

  /** The reference table and the maps, once the image is known to fit in memory. */
  allocate(imrt: Imrt, entries: number): void {
    this.imrt = imrt;
    this.refBytes = imrt.bytes;
    this.copiedSet = new Uint8Array(Math.ceil(entries / 8));
    this.copiedEntries = entries;
    if (this.opts.roleMap) this.roleMap = new Uint8Array(entries);
    if (this.opts.guestMap) {
      this.guestMap = new Uint8Array(this.guestClusters);
      if (this.image.header.backingFileOffset !== 0) this.guestMap.fill(GuestState.Backing);
    }
  }

  // ---- plumbing ----------------------------------------------------------------------------

  say(line: string): void {
    if (this.messages.length < MAX_KEPT_MESSAGES) this.messages.push(line);
    this.opts.onMessage?.(line);
  }

  find(f: EntryFinding): void {
    if (this.findings.length < MAX_FINDINGS) this.findings.push(f);
    else this.findingsDropped++;
  }

  nbClusters(): number {
    return Math.max(this.fileClusters, this.maxReferenced + 1);
  }

  checkCancel(): void {
    if (this.opts.cancel?.isCancelled) throw new CancelledError();
  }

  progress(fraction: number, stage: string): void {
    this.opts.onProgress?.({ fraction: Math.min(1, fraction), stage });
  }

  work(units: number, stage: string): void {
    this.workDone += units;
    this.progress(this.workDone / this.workTotal, stage);
  }

  /** Units: one per L2 table to read, one per refcount block, one per L1 entry batch. */
  estimateWork(): void {
    let n = 0;
    const l1 = this.image.l1;
    for (let i = 0; i < l1.length; i += 8) if (u32(l1, i) !== 0 || u32(l1, i + 4) !== 0) n++;
    n *= 1 + this.snapshots.length; // snapshots mostly share the active tables' shape
    n += Math.ceil(this.fileClusters / this.image.geo.refcountBlockEntries);
    this.workTotal = Math.max(1, n);
  }

  // ---- counting references (QEMU's qcow2_inc_refcounts_imrt) --------------------------------

  /** Exact reference count of cluster k. */
  refAt(k: number): number {
    const v = this.imrt.get(k);
    return this.wide && v === WIDE_SENTINEL ? this.wideCounts.get(k)! : v;
  }

  incCluster(k: number, role: number): void {
    const v = this.refAt(k);
    // A second reference to a cluster some active entry flags COPIED: that flag is wrong.
    if (v !== 0 && (this.copiedSet[k >>> 3]! & (1 << (k & 7))) !== 0) this.copiedReplay = true;
    if (v >= this.refMax) {
      const line = msg.overflow((k * this.clusterSize).toString(16));
      this.say(line);
      this.say(msg.overflowHint());
      this.counters.corruptions++;
      this.copiedReplay = true;
      this.find({ kind: 'refcount-overflow', offset: k * this.clusterSize });
      this.anomalies.add('refcount-overflow', { cluster: k, qemuMessage: line });
    } else if (this.wide && v + 1 >= WIDE_SENTINEL) {
      this.imrt.set(k, WIDE_SENTINEL);
      this.wideCounts.set(k, v + 1);
    } else {
      this.imrt.increment(k, v);
    }
    if (k > this.maxReferenced) this.maxReferenced = k;
    if (this.roleMap) this.setRole(k, role);
  }

  /** One more reference to cluster k whose count `v` is below fastLimit and carries no COPIED bit. */
  bump(k: number, v: number, role: number): void {
    this.imrt.set(k, v + 1);
    if (k > this.maxReferenced) this.maxReferenced = k;
    if (this.roleMap) this.setRole(k, role);
  }

  setRole(k: number, role: number): void {
    const rm = this.roleMap!;
    const old = rm[k]!;
    if (old === HostRole.Free || old === role) rm[k] = role;
    else if (
      (old === HostRole.L2 && role === HostRole.SnapshotL2) ||
      (old === HostRole.Data && role === HostRole.SnapshotData)
    )
      return;
    else rm[k] = HostRole.Corrupt;
  }

  /**
   * Count [offset, offset+size): QEMU's EOF guard, then +1 on every cluster touched.
   * `offHex` is the offset as QEMU prints it, when the number may be imprecise (> 2^53).
   */
  incRange(offset: number, size: number, role: number, what: EntryFinding, offHex?: string): boolean {
    if (size <= 0) return true;
    if (offset + size - this.fileSize >= this.clusterSize) {
      const line = msg.beyondEof(offHex ?? offset.toString(16), size.toString(16));
      this.say(line);
      this.counters.corruptions++;
      this.find({ ...what, kind: 'beyond-eof', offset, size });
      this.anomalies.add('beyond-eof', { qemuMessage: line, referrer: referrerOf(what) });
      this.anomalies.cut();
      return false;
    }
    this.incSpan(offset, size, role);
    return true;
  }

  /** incRange's counting part, for callers that checked `fits` (no referrer built per entry). */
  incSpan(offset: number, size: number, role: number): void {
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + size - 1) / this.clusterSize);
    for (let k = first; k <= last; k++) this.incCluster(k, role);
  }

  /** Whether incRange would count [offset, offset+size) without an end-of-file error. */
  fits(offset: number, size: number): boolean {
    return size > 0 && offset + size - this.fileSize < this.clusterSize;
  }

  /** Remember metadata clusters by role; a cluster claimed by two kinds of metadata is an overlap. */
  claimMeta(offset: number, size: number, role: number, what: string): void {
    if (size <= 0 || offset >= this.fileSize) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.min(Math.floor((offset + size - 1) / this.clusterSize), this.fileClusters);
    for (let k = first; k <= last; k++) {
      const old = this.metaRoles.get(k);
      if (old === undefined) this.metaRoles.set(k, role);
      else if (old !== role && !(old === HostRole.L2 && role === HostRole.SnapshotL2)) {
        this.anomalies.add('metadata-overlap', { cluster: k, referrer: { kind: what } });
      }
    }
  }

  // ---- COPIED bookkeeping (for check_oflag_copied) -------------------------------------------

  /**
   * Note an active entry's COPIED flag for cluster k (after its reference was counted). QEMU's
   * check_oflag_copied compares the flag with the on-disk refcount; we only re-walk the active tables
   * for it when this pass, the compare pass or the final scan saw a possible disagreement.
   */
  markCopied(k: number, copied: boolean): void {
    if (k >= this.fileClusters) {
      this.copiedReplay = true;
      return;
    }
    if (copied) {
      if (this.refAt(k) !== 1) this.copiedReplay = true;
      this.copiedSet[k >>> 3] = this.copiedSet[k >>> 3]! | (1 << (k & 7));
    } else {
      this.noteCopiedClear();
      this.copiedClear[k >>> 3] = this.copiedClear[k >>> 3]! | (1 << (k & 7));
    }
  }

  /** The first entry without COPIED allocates the bits that remember such entries. */
  noteCopiedClear(): void {
    if (!this.anyCopiedClear) this.copiedClear = new Uint8Array(Math.ceil(this.copiedEntries / 8));
    this.anyCopiedClear = true;
  }
}
