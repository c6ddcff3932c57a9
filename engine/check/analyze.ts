// The analysis step of the checker: QEMU's calculate_refcounts + compare_refcounts +
// check_oflag_copied (qemu-img check without -r), in QEMU's order and with QEMU's messages, but
// reading every table once in large sorted reads. The result is the raw material for the QEMU
// report (engine/report/qemu-text.ts), for our anomalies, and for the repair planner.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import * as C from '../format/constants.js';
import { hex64, u32 } from '../format/bytes.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { CancelledError } from '../base/errors.js';
import { readPadded } from '../io/positional-io.js';
import { AnomalyCollector } from './anomalies.js';
import { bitmapsActive, BitmapError, loadBitmapDirectory, loadBitmapTable, type BitmapDirectory } from './bitmaps.js';
import { BufferPool, pipeline, readRanges, readRangesInto } from './batch-reader.js';
import { decodes, MAX_COMPRESSED_SAMPLES, type CompressedSample } from './compressed-sample.js';
import { msg } from './messages.js';
import { MAX_IMRT_BYTES, refArrayMax, WIDE_SENTINEL } from './refcount-array.js';
import { LOOKUP_FAILED, RefcountLookup } from './refcount-lookup.js';
import { GuestState, HostRole } from '../contract/roles.js';
import { precheckSnapshotTable, type CheckedSnapshot } from './snapshot-table.js';
import type { Anomaly, CheckOptions, QemuCounters, Referrer } from './types.js';
import { findReferrers } from './describe.js';
import { Imrt, IMRT_PAGE } from './imrt.js';
import { bswap32, isZero, LITTLE_ENDIAN, nextNonZeroEntry, runLength, setBitRange } from './words.js';

/** Where a per-entry finding sits, exactly, for the repair planner and the app. */
export interface EntryFinding {
  /** Same names as the anomaly kinds (see ANOMALY_KINDS). */
  kind: string;
  /** Which table holds the entry: 'l1', 'l2', 'snapshot-l1', 'snapshot-l2', 'reftable', 'snapshot-table', ... */
  table?: string;
  /** Host offset of that table. */
  tableOffset?: number;
  /** Index of the entry in the table (L1 index, L2 index, reftable index, snapshot index). */
  index?: number;
  /** The entry's 64-bit value in hex (no 0x), as QEMU prints it. */
  entry?: string;
  /** Guest offset the entry maps (active L2 entries; snapshot L2 entries map the snapshot's view). */
  guestOffset?: number;
  /** Snapshot id when the entry is reached from a snapshot's L1. */
  snapshotId?: string;
  /** Host byte range concerned (data offset, region past EOF, ...). */
  offset?: number;
  size?: number;
  /** On-disk refcount involved (COPIED findings). */
  refcount?: number;
}

/** The analysis of one image. Stable API for the repair engineer (issue 5): extend, don't change. */
export interface Analysis {
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
  /** Per-entry findings with exact locations (capped at MAX_FINDINGS; `findingsDropped` counts the rest). */
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
}

const MAX_FINDINGS = 100000;
/** Clusters whose referrers are looked up for the anomalies. */
const MAX_EXPLAINED = 256;
/** QEMU prints this hint without a newline (the next stderr line is glued to it); the CLI does the same. */
export const BITMAPS_LEAK_HINT = "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.";
const MAX_KEPT_MESSAGES = 10000;
/** Bytes of tables read per batch (bounds memory; large enough for long sequential reads). */
const BATCH_BYTES = 1024 * 1024;
const TWO32 = 0x1_0000_0000;
/** Bytes of 16-bit ones (00 01 ...) compared at a time. */
const ONES_PIECE = 64 * 1024;

/** A check failure that stops the walk (QEMU returns -errno). */
class Abort extends Error {
  constructor(
    readonly reason: string,
    readonly atOpen = false,
  ) {
    super(reason);
  }
}

export async function analyzeImage(image: Qcow2Image, opts: CheckOptions = {}): Promise<Analysis> {
  return new Analyzer(image, opts).run();
}

class Analyzer {
  private readonly cs: number;
  private readonly cb: number;
  private readonly fileSize: number;
  private readonly fileClusters: number;
  private readonly ext: boolean;
  private readonly dataFile: boolean;
  private ref!: Uint8Array;
  /** The reference counts (`ref` is its bytes, for the loops that read them as such). */
  private imrt!: Imrt;
  private refMax: number;
  /** Counts of 255 and more, for refcount widths above 8 bits (the byte then holds WIDE_SENTINEL). */
  private readonly over = new Map<number, number>();
  private readonly wide: boolean;
  /** Counters below this are incremented inline; at or above it the slow path decides. */
  private readonly fastLimit: number;
  private maxK = -1;
  private readonly c: QemuCounters = {
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
  private rebuild = false;
  private readonly findings: EntryFinding[] = [];
  private findingsDropped = 0;
  private readonly messages: string[] = [];
  private readonly an = new AnomalyCollector();
  private copiedSet!: Uint8Array;
  /** Allocated on the first active reference without COPIED (images without snapshots never need it). */
  private copiedClear: Uint8Array = new Uint8Array(0);
  private copiedEntries = 0;
  private copiedReplay = false;
  private anyCopiedClear = false;
  private readonly compressedSamples: CompressedSample[] = [];
  private roleMap?: Uint8Array;
  private guestMap?: Uint8Array;
  private readonly zeros: Uint8Array;
  /** Read arenas: a file is read into the first; other sources fill the second while a batch is walked. */
  private readonly pools = [new BufferPool(BATCH_BYTES), new BufferPool(BATCH_BYTES)];
  private snapshots: CheckedSnapshot[] = [];
  private snapshotTableSize = 0;
  private bitmapDir?: BitmapDirectory;
  private workTotal = 1;
  private workDone = 0;
  private readonly lookup: RefcountLookup;
  private signalled = false;
  /** Metadata clusters claimed so far (for the metadata-overlap warning): cluster → role. */
  private readonly metaRoles = new Map<number, number>();
  private readonly guestClusters: number;
  /** Whether anyone waits on the event loop during the walk (progress, cancel). */
  private readonly listened: boolean;

  constructor(
    private readonly image: Qcow2Image,
    private readonly opts: CheckOptions,
  ) {
    this.cs = image.clusterSize;
    this.cb = image.geo.clusterBits;
    this.fileSize = image.fileSize;
    this.fileClusters = Math.ceil(this.fileSize / this.cs);
    this.ext = image.geo.extendedL2;
    this.dataFile = image.hasExternalData;
    this.refMax = refArrayMax(image.geo.refcountOrder);
    this.wide = image.geo.refcountOrder > 3;
    this.fastLimit = this.wide ? WIDE_SENTINEL - 1 : this.refMax;
    this.zeros = new Uint8Array(this.cs);
    this.guestClusters = Math.ceil(image.virtualSize / this.cs);
    this.listened = !!(opts.cancel || opts.onProgress);
    this.lookup = new RefcountLookup(image);
    this.lookup.onUnaligned = (rtIndex, off) => {
      if (this.signalled) return;
      this.signalled = true;
      this.say(msg.refblockSignal(off, rtIndex));
    };
  }

  async run(): Promise<Analysis> {
    const img = this.image;
    let failed: string | undefined;
    let failedAtOpen = false;
    try {
      // A caller that can cancel gets its messages handled before the walk starts: reads are
      // synchronous, and the walk yields only every few milliseconds.
      if (this.opts.cancel) {
        await new Promise((resolve) => setImmediate(resolve));
        this.checkCancel();
      }
      this.c.totalClusters = this.guestClusters;
      await this.openBitmaps();
      await this.snapshotPrecheck();
      if (this.fileClusters > 0x7fffffff) {
        this.c.checkErrors++;
        throw new Abort('File too large');
      }
      const entries = this.fileClusters + 2;
      if (entries > MAX_IMRT_BYTES) {
        this.c.checkErrors++;
        throw new Abort('Cannot allocate memory');
      }
      this.imrt = new Imrt(entries);
      this.ref = this.imrt.bytes;
      this.copiedSet = new Uint8Array(Math.ceil(entries / 8));
      this.copiedEntries = entries;
      if (this.opts.roleMap) this.roleMap = new Uint8Array(entries);
      if (this.opts.guestMap) {
        this.guestMap = new Uint8Array(this.guestClusters);
        if (img.header.backingFileOffset !== 0) this.guestMap.fill(GuestState.Backing);
      }
      this.estimateWork();
      await this.calculateRefcounts();
      await this.compareRefcounts();
      await this.checkOflagCopied();
      this.c.imageEndOffset = (this.highest + 1) * this.cs;
      this.extraHeaderFindings();
      await this.checkCompressedSamples();
      if (this.opts.explainReferrers !== false) await this.nameReferrers();
    } catch (e) {
      if (e instanceof Abort) {
        failed = e.reason;
        failedAtOpen = e.atOpen;
      } else throw e;
    }
    this.progress(1, 'done');
    const self = this; // for the lazily written-out `references`
    const a: Analysis = {
      clusterSize: this.cs,
      fileSize: this.fileSize,
      fileClusters: this.fileClusters,
      nbClusters: this.nbClusters(),
      referencesAt: (k) => this.refAt(k),
      refcountMax: this.refMax,
      // Written out in full only when someone asks for the whole array.
      get references(): Uint8Array {
        return self.imrt ? self.imrt.dense() : new Uint8Array(0);
      },
      counters: this.c,
      rebuild: this.rebuild,
      findings: this.findings,
      findingsDropped: this.findingsDropped,
      snapshots: this.snapshots,
      snapshotTableSize: this.snapshotTableSize,
      highestCluster: this.highest,
      anomalies: this.an.finish(),
      messages: this.messages,
    };
    if (this.bitmapDir) a.bitmaps = this.bitmapDir;
    if (failed !== undefined) a.failed = failed;
    if (failedAtOpen) a.failedAtOpen = true;
    if (this.roleMap) a.roleMap = this.roleMap;
    if (this.guestMap) a.guestMap = this.guestMap;
    return a;
  }

  // ---- plumbing ----------------------------------------------------------------------------

  private say(line: string): void {
    if (this.messages.length < MAX_KEPT_MESSAGES) this.messages.push(line);
    this.opts.onMessage?.(line);
  }

  private find(f: EntryFinding): void {
    if (this.findings.length < MAX_FINDINGS) this.findings.push(f);
    else this.findingsDropped++;
  }

  private nbClusters(): number {
    return Math.max(this.fileClusters, this.maxK + 1);
  }

  private checkCancel(): void {
    if (this.opts.cancel?.isCancelled) throw new CancelledError();
  }

  private progress(fraction: number, stage: string): void {
    this.opts.onProgress?.({ fraction: Math.min(1, fraction), stage });
  }

  private work(units: number, stage: string): void {
    this.workDone += units;
    this.progress(this.workDone / this.workTotal, stage);
  }

  /** Units: one per L2 table to read, one per refcount block, one per L1 entry batch. */
  private estimateWork(): void {
    let n = 0;
    const l1 = this.image.l1;
    for (let i = 0; i < l1.length; i += 8) if (u32(l1, i) !== 0 || u32(l1, i + 4) !== 0) n++;
    n *= 1 + this.snapshots.length; // snapshots mostly share the active tables' shape
    n += Math.ceil(this.fileClusters / this.image.geo.refcountBlockEntries);
    this.workTotal = Math.max(1, n);
  }

  // ---- counting references (QEMU's qcow2_inc_refcounts_imrt) --------------------------------

  /** QEMU's highest_cluster starts at 0 (so an image whose refcounts are all unreadable ends at 1 cluster). */
  private high = 0;
  private get highest(): number {
    return this.high;
  }

  /** Exact reference count of cluster k. */
  refAt(k: number): number {
    const v = this.imrt.get(k);
    return this.wide && v === WIDE_SENTINEL ? this.over.get(k)! : v;
  }

  private incCluster(k: number, role: number): void {
    const v = this.refAt(k);
    // A second reference to a cluster some active entry flags COPIED: that flag is wrong.
    if (v !== 0 && (this.copiedSet[k >>> 3]! & (1 << (k & 7))) !== 0) this.copiedReplay = true;
    if (v >= this.refMax) {
      const line = msg.overflow((k * this.cs).toString(16));
      this.say(line);
      this.say(msg.overflowHint());
      this.c.corruptions++;
      this.copiedReplay = true;
      this.find({ kind: 'refcount-overflow', offset: k * this.cs });
      this.an.add('refcount-overflow', { cluster: k, qemuMessage: line });
    } else if (this.wide && v + 1 >= WIDE_SENTINEL) {
      this.imrt.set(k, WIDE_SENTINEL);
      this.over.set(k, v + 1);
    } else {
      this.imrt.increment(k, v);
    }
    if (k > this.maxK) this.maxK = k;
    if (this.roleMap) this.setRole(k, role);
  }

  private setRole(k: number, role: number): void {
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
  private incRange(offset: number, size: number, role: number, what: EntryFinding, offHex?: string): boolean {
    if (size <= 0) return true;
    if (offset + size - this.fileSize >= this.cs) {
      const line = msg.beyondEof(offHex ?? offset.toString(16), size.toString(16));
      this.say(line);
      this.c.corruptions++;
      this.find({ ...what, kind: 'beyond-eof', offset, size });
      this.an.add('beyond-eof', { qemuMessage: line, referrer: referrerOf(what) });
      this.an.cut();
      return false;
    }
    this.incSpan(offset, size, role);
    return true;
  }

  /** incRange's counting part, for callers that checked `fits` (no referrer built per entry). */
  private incSpan(offset: number, size: number, role: number): void {
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) this.incCluster(k, role);
  }

  /** Whether incRange would count [offset, offset+size) without an end-of-file error. */
  private fits(offset: number, size: number): boolean {
    return size > 0 && offset + size - this.fileSize < this.cs;
  }

  private claimMeta(offset: number, size: number, role: number, what: string): void {
    if (size <= 0 || offset >= this.fileSize) return;
    const first = Math.floor(offset / this.cs);
    const last = Math.min(Math.floor((offset + size - 1) / this.cs), this.fileClusters);
    for (let k = first; k <= last; k++) {
      const old = this.metaRoles.get(k);
      if (old === undefined) this.metaRoles.set(k, role);
      else if (old !== role && !(old === HostRole.L2 && role === HostRole.SnapshotL2)) {
        this.an.add('metadata-overlap', { cluster: k, referrer: { kind: what } });
      }
    }
  }

  // ---- QEMU's calculate_refcounts ---------------------------------------------------------

  private async calculateRefcounts(): Promise<void> {
    const img = this.image;
    const h = img.header;
    // 1. header
    this.incRange(0, this.cs, HostRole.Header, { kind: 'header', table: 'header' });
    this.claimMeta(0, this.cs, HostRole.Header, 'header');
    // 2. active L1
    await this.checkL1(h.l1TableOffset, h.l1Size, true, undefined);
    // 3. snapshots
    if (this.dataFile && this.snapshots.length) {
      const line = msg.snapshotsWithDataFile(this.snapshots.length);
      this.say(line);
      this.c.corruptions++;
      this.find({ kind: 'snapshots-with-data-file' });
      this.an.add('snapshots-with-data-file', { qemuMessage: line });
    }
    for (const sn of this.snapshots) {
      if (sn.l1TableOffset % this.cs !== 0) {
        const line = msg.snapshotL1Unaligned(sn.id, sn.name, sn.l1TableOffset.toString(16));
        this.say(line);
        this.c.corruptions++;
        this.find({
          kind: 'snapshot-l1-unaligned',
          table: 'snapshot-table',
          tableOffset: sn.entryOffset,
          index: sn.index,
          snapshotId: sn.id,
          offset: sn.l1TableOffset,
        });
        this.an.add('snapshot-l1-unaligned', {
          qemuMessage: line,
          referrer: { kind: 'snapshot-table', index: sn.index, snapshotId: sn.id },
        });
        this.an.cut();
        continue;
      }
      if (sn.l1Size > C.QCOW_MAX_L1_SIZE / C.L1_ENTRY_SIZE) {
        const line = msg.snapshotL1TooLarge(sn.id, sn.name, sn.l1Size);
        this.say(line);
        this.c.corruptions++;
        this.find({
          kind: 'snapshot-l1-too-large',
          table: 'snapshot-table',
          tableOffset: sn.entryOffset,
          index: sn.index,
          snapshotId: sn.id,
          size: sn.l1Size,
        });
        this.an.add('snapshot-l1-too-large', {
          qemuMessage: line,
          referrer: { kind: 'snapshot-table', index: sn.index, snapshotId: sn.id },
        });
        this.an.cut();
        continue;
      }
      if (sn.diskSize !== undefined && sn.diskSize !== img.virtualSize)
        this.an.add('snapshot-disk-size', { referrer: { kind: 'snapshot-table', index: sn.index, snapshotId: sn.id } });
      await this.checkL1(sn.l1TableOffset, sn.l1Size, false, sn);
    }
    // 4. snapshot table
    this.incRange(h.snapshotsOffset, this.snapshotTableSize, HostRole.SnapshotTable, {
      kind: 'snapshot-table',
      table: 'header',
    });
    this.claimMeta(h.snapshotsOffset, this.snapshotTableSize, HostRole.SnapshotTable, 'snapshot table');
    // 5. refcount table
    const rtBytes = h.refcountTableClusters * this.cs;
    this.incRange(h.refcountTableOffset, rtBytes, HostRole.RefcountTable, { kind: 'reftable', table: 'header' });
    this.claimMeta(h.refcountTableOffset, rtBytes, HostRole.RefcountTable, 'refcount table');
    // 6. encryption header
    if (h.crypto?.length) {
      this.incRange(h.crypto.offset, h.crypto.length, HostRole.CryptoHeader, {
        kind: 'crypto-header',
        table: 'header',
      });
      this.claimMeta(h.crypto.offset, h.crypto.length, HostRole.CryptoHeader, 'encryption header');
    }
    // 7. bitmaps
    await this.checkBitmaps();
    // 8. refcount blocks
    this.checkRefblocks();
  }

  /** QEMU's check_refcounts_l1 (+ check_refcounts_l2 for every table), batched reads. */
  private async checkL1(
    l1Offset: number,
    l1Size: number,
    active: boolean,
    sn: CheckedSnapshot | undefined,
  ): Promise<void> {
    if (l1Size === 0) return;
    const l1Bytes = l1Size * C.L1_ENTRY_SIZE;
    const l1Role = active ? HostRole.L1 : HostRole.SnapshotL1;
    this.incRange(l1Offset, l1Bytes, l1Role, {
      kind: active ? 'l1' : 'snapshot-l1',
      table: active ? 'header' : 'snapshot-table',
      snapshotId: sn?.id,
    });
    this.claimMeta(l1Offset, l1Bytes, l1Role, active ? 'active L1 table' : 'snapshot L1 table');
    const l1 = active
      ? this.image.l1
      : l1Offset >= this.fileSize
        ? new Uint8Array(l1Bytes)
        : await readPadded(this.image.io, l1Offset, l1Bytes);
    const tableName = active ? 'l1' : 'snapshot-l1';
    const l2Role = active ? HostRole.L2 : HostRole.SnapshotL2;
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / this.cs));
    let i = 0;
    // Gather batches of L2 tables in L1 order; each is read sorted while the previous one is walked.
    const nextBatch = (): { batch: number[]; offsets: number[] } | undefined => {
      const batch: number[] = [];
      const offsets: number[] = [];
      for (; i < l1Size && batch.length < perBatch; i++) {
        const hi = u32(l1, 8 * i);
        const lo = u32(l1, 8 * i + 4);
        if (hi === 0 && lo === 0) continue;
        batch.push(i);
        offsets.push((hi & C.L1E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0));
      }
      return batch.length ? { batch, offsets } : undefined;
    };
    await pipeline(
      this.image.io,
      this.fileSize,
      this.cs,
      this.zeros,
      this.pools,
      nextBatch,
      ({ batch, offsets }, tables) => {
        this.checkCancel();
        const cs = this.cs;
        for (let b = 0; b < batch.length; b++) {
          const idx = batch[b]!;
          const hi = u32(l1, 8 * idx);
          const lo = u32(l1, 8 * idx + 4);
          const l2Off = offsets[b]!;
          // The common entry takes the short way; the rest builds its referrer and says what is wrong.
          if (
            (hi & C.L1E_RESERVED_MASK_HI) !== 0 ||
            (lo & C.L1E_RESERVED_MASK_LO) !== 0 ||
            l2Off % cs !== 0 ||
            !this.fits(l2Off, cs)
          ) {
            this.l1EntryChecks(
              hi,
              lo,
              idx,
              l2Off,
              {
                kind: '',
                table: tableName,
                tableOffset: l1Offset,
                index: idx,
                entry: hex64(hi, lo),
                snapshotId: sn?.id,
              },
              l2Role,
              active,
            );
          } else {
            this.incSpan(l2Off, cs, l2Role);
            this.claimMeta(l2Off, cs, l2Role, active ? 'active L2 table' : 'snapshot L2 table');
          }
          if (active && l2Off !== 0) this.markCopied(Math.floor(l2Off / this.cs), (hi & C.OFLAG_COPIED_HI) !== 0);
          this.checkL2(tables.get(l2Off)!, l2Off, active, idx, sn, active && l2Off !== 0);
        }
        this.work(batch.length, active ? 'active L2 tables' : 'snapshot L2 tables');
      },
      this.listened,
    );
  }

  /** One L1 entry with something to report (reserved bits, unaligned or past end of file), in QEMU's order. */
  private l1EntryChecks(
    hi: number,
    lo: number,
    _idx: number,
    l2Off: number,
    where: EntryFinding,
    l2Role: number,
    active: boolean,
  ): void {
    if ((hi & C.L1E_RESERVED_MASK_HI) !== 0 || (lo & C.L1E_RESERVED_MASK_LO) !== 0) {
      const line = msg.l1Reserved(hex64(hi, lo));
      this.say(line);
      this.c.corruptions++;
      this.find({ ...where, kind: 'l1-reserved-bits' });
      this.an.add('l1-reserved-bits', { qemuMessage: line, referrer: referrerOf(where) });
      this.an.cut();
    }
    this.incRange(l2Off, this.cs, l2Role, where);
    this.claimMeta(l2Off, this.cs, l2Role, active ? 'active L2 table' : 'snapshot L2 table');
    if (l2Off % this.cs !== 0) {
      const line = msg.l2TableUnaligned(l2Off.toString(16));
      this.say(line);
      this.c.corruptions++;
      this.find({ ...where, kind: 'l2-table-unaligned', offset: l2Off });
      this.an.add('l2-table-unaligned', { qemuMessage: line, referrer: referrerOf(where) });
      this.an.cut();
    }
  }

  /**
   * Note an active entry's COPIED flag for cluster k (after its reference was counted). QEMU's
   * check_oflag_copied compares the flag with the on-disk refcount; we only re-walk the active tables
   * for it when this pass, the compare pass or the final scan saw a possible disagreement.
   */
  private markCopied(k: number, copied: boolean): void {
    if (k >= this.fileClusters) {
      this.copiedReplay = true;
      return;
    }
    if (copied) {
      if (this.refAt(k) !== 1) this.copiedReplay = true;
      this.copiedSet[k >>> 3] = this.copiedSet[k >>> 3]! | (1 << (k & 7));
    } else {
      if (!this.anyCopiedClear) this.copiedClear = new Uint8Array(Math.ceil(this.copiedEntries / 8));
      this.copiedClear[k >>> 3] = this.copiedClear[k >>> 3]! | (1 << (k & 7));
      this.anyCopiedClear = true;
    }
  }

  /** Entries without COPIED are right only if the cluster is shared (refcount != 1). */
  private scanCopiedClear(): void {
    if (!this.anyCopiedClear || this.copiedReplay) return;
    const bits = this.copiedClear;
    for (let b = 0; b < bits.length; b++) {
      const x = bits[b]!;
      if (x === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if ((x >> bit) & 1 && this.refAt(b * 8 + bit) === 1) {
          this.copiedReplay = true;
          return;
        }
      }
    }
  }

  // Per-table state shared by the fast loop and the general entry handler.
  private l2NextContig = 0;
  private l2Allocated = 0;
  private l2Fragmented = 0;

  /**
   * QEMU's check_refcounts_l2 for one table. The loop handles the overwhelmingly common entry
   * (standard, aligned, inside the file, no flags but COPIED) inline, a run of consecutive host
   * clusters at a time, writing the role and guest maps as it goes; everything else goes to
   * `l2Entry`, which follows QEMU's logic step by step.
   */
  private checkL2(
    buf: Uint8Array,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
    copiedCheck: boolean,
  ): void {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const n = this.image.geo.l2Entries;
    this.l2NextContig = 0;
    this.l2Allocated = 0;
    this.l2Fragmented = 0;
    const fast = LITTLE_ENDIAN && !this.ext && !this.dataFile && this.image.header.version !== 2;
    if (!fast) {
      for (let i = 0; i < n; i++) this.l2Entry(dv, i, l2Off, active, l1Index, sn, copiedCheck);
    } else {
      // Entries are big-endian: read them as native words (raw) and byte-swap only what is used.
      if ((buf.byteOffset & 3) !== 0) {
        this.l2Scratch ??= new Uint8Array(this.cs);
        this.l2Scratch.set(buf.subarray(0, this.cs));
        buf = this.l2Scratch;
      }
      this.fastL2(new Int32Array(buf.buffer, buf.byteOffset, 2 * n), dv, l2Off, active, l1Index, sn, copiedCheck);
    }
    if (active) {
      this.c.allocatedClusters += this.l2Allocated;
      this.c.fragmentedClusters += this.l2Fragmented;
    }
  }

  private l2Scratch?: Uint8Array;

  private fastL2(
    u: Int32Array,
    dv: DataView,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
    copiedCheck: boolean,
  ): void {
    const n = u.length >>> 1;
    const cs = this.cs;
    const cb = this.cb;
    const rm = this.roleMap;
    const gm = active ? this.guestMap : undefined;
    const role = active ? HostRole.Data : HostRole.SnapshotData;
    const hiMul = 2 ** (32 - cb);
    const fileClusters = this.fileClusters;
    const gBase = l1Index * n;
    // Anything in these bits leaves the fast path: compressed/reserved (hi), reserved/zero/unaligned (lo).
    const rejectHi = bswap32((C.OFLAG_COMPRESSED_HI | C.L2E_STD_RESERVED_MASK_HI) >>> 0);
    const rejectLo = bswap32((cs - 1) >>> 0);
    const copiedRaw = bswap32(C.OFLAG_COPIED_HI);
    let nextContig = this.l2NextContig;
    let allocated = this.l2Allocated;
    let fragmented = this.l2Fragmented;
    let i = 0;
    while (i < n) {
      const rhi = u[2 * i]!;
      const rlo = u[2 * i + 1]!;
      if ((rhi | rlo) === 0) {
        // Unallocated: skip the whole stretch, four entries a time while it lasts.
        let p = 2 * i + 2;
        const wEnd = 2 * n;
        while (
          p + 8 <= wEnd &&
          (u[p]! | u[p + 1]! | u[p + 2]! | u[p + 3]! | u[p + 4]! | u[p + 5]! | u[p + 6]! | u[p + 7]!) === 0
        )
          p += 8;
        while (p < wEnd && (u[p]! | u[p + 1]!) === 0) p += 2;
        i = p >>> 1;
        continue;
      }
      if ((rhi & rejectHi) === 0 && (rlo & rejectLo) === 0) {
        const lo = bswap32(rlo) >>> 0;
        const k = (bswap32(rhi) & C.L2E_OFFSET_MASK_HI) * hiMul + (lo >>> cb);
        if (k !== 0 && k < fileClusters) {
          // The run: following entries with the same high word and the next host cluster each.
          const maxRun = Math.min(n - i, fileClusters - k, (TWO32 - lo) / cs);
          const m = runLength(u, i, 2 * (i + maxRun), rhi, lo, cb);
          if (active) {
            allocated += m;
            if (nextContig !== 0 && k * cs !== nextContig) fragmented++;
            nextContig = (k + m) * cs;
          }
          this.countRun(k, m, (rhi & copiedRaw) !== 0, copiedCheck, role, rm);
          if (gm !== undefined && gBase + i < gm.length)
            gm.fill(GuestState.Data, gBase + i, Math.min(gm.length, gBase + i + m));
          i += m;
          continue;
        }
      }
      this.l2NextContig = nextContig;
      this.l2Allocated = allocated;
      this.l2Fragmented = fragmented;
      this.l2Entry(dv, i, l2Off, active, l1Index, sn, copiedCheck);
      nextContig = this.l2NextContig;
      allocated = this.l2Allocated;
      fragmented = this.l2Fragmented;
      i++;
    }
    this.l2NextContig = nextContig;
    this.l2Allocated = allocated;
    this.l2Fragmented = fragmented;
  }

  /**
   * Count one reference to each of clusters [k, k+m) from data entries with the same COPIED flag:
   * QEMU's qcow2_inc_refcounts_imrt plus our COPIED bookkeeping, clusters seen before handled one by one.
   */
  private countRun(
    k: number,
    m: number,
    copied: boolean,
    copiedCheck: boolean,
    role: number,
    rm: Uint8Array | undefined,
  ): void {
    const ref = this.ref;
    const setBits = this.copiedSet;
    const fastLimit = this.fastLimit;
    const end = k + m;
    if (this.imrt.countFresh(k, end)) {
      // No cluster of the run was referenced before: one reference each, their roles were free.
      if (rm !== undefined) rm.fill(role, k, end);
    } else {
      this.imrt.prepareBytes(k, end, true);
      for (let c = k; c < end; c++) {
        const v = ref[c]!;
        if (v === 0) {
          // First reference: its role was free, and no COPIED bit can be set for it yet.
          ref[c] = 1;
          if (rm !== undefined) rm[c] = role;
          continue;
        }
        const bit = 1 << (c & 7);
        if (copiedCheck && copied) {
          this.copiedReplay = true;
          if (v >= fastLimit) this.incCluster(c, role);
          else this.bump(c, v, role);
        } else if (v >= fastLimit || (setBits[c >>> 3]! & bit) !== 0) this.incCluster(c, role);
        else this.bump(c, v, role);
      }
    }
    if (copiedCheck) {
      if (copied) setBitRange(setBits, k, end);
      else {
        if (!this.anyCopiedClear) this.copiedClear = new Uint8Array(Math.ceil(this.copiedEntries / 8));
        this.anyCopiedClear = true;
        setBitRange(this.copiedClear, k, end);
      }
    }
  }

  private bump(k: number, v: number, role: number): void {
    this.imrt.set(k, v + 1);
    if (k > this.maxK) this.maxK = k;
    if (this.roleMap) this.setRole(k, role);
  }

  /** One L2 entry, general case: QEMU's check_refcounts_l2 loop body, plus our extra diagnostics. */
  private l2Entry(
    dv: DataView,
    i: number,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
    copiedCheck: boolean,
  ): void {
    const geo = this.image.geo;
    const p = i * geo.l2EntrySize;
    const ext = this.ext;
    const cs = this.cs;
    const hi = dv.getUint32(p);
    const lo = dv.getUint32(p + 4);
    const bhi = ext ? dv.getUint32(p + 8) : 0;
    const blo = ext ? dv.getUint32(p + 12) : 0;
    const gm = active ? this.guestMap : undefined;
    const g = l1Index * geo.l2Entries + i;
    const inGuest = gm !== undefined && g < gm.length;
    if ((hi | lo | blo) === 0) {
      if (inGuest && bhi !== 0) gm[g] = GuestState.Zero;
      return; // unallocated (the bitmap has at most zero bits)
    }
    if (hi & C.OFLAG_COMPRESSED_HI) {
      this.compressedEntry(hi, lo, bhi, blo, i, l2Off, active, l1Index, sn);
      if (inGuest) gm[g] = GuestState.Compressed;
      return;
    }
    if ((hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & C.L2E_STD_RESERVED_MASK_LO) !== 0) {
      const line = msg.l2Reserved(hex64(hi, lo));
      this.say(line);
      this.c.corruptions++;
      this.entryFinding('l2-reserved-bits', line, hi, lo, i, l2Off, active, l1Index, sn);
    }
    const hasOff = (hi & C.L2E_OFFSET_MASK_HI) !== 0 || (lo & C.L2E_OFFSET_MASK_LO) !== 0;
    const zeroFlag = !ext && (lo & C.OFLAG_ZERO_LO) !== 0;
    if (zeroFlag) {
      if (this.image.header.version === 2)
        this.an.add('v2-zero-flag', {
          referrer: {
            kind: active ? 'l2' : 'snapshot-l2',
            table: l2Off,
            index: i,
            guestOffset: g * cs,
            snapshotId: sn?.id,
          },
        });
      if (inGuest) gm[g] = GuestState.Zero;
      if (!hasOff) return; // ZERO_PLAIN
    } else if (!hasOff && !(this.dataFile && hi & C.OFLAG_COPIED_HI)) {
      // UNALLOCATED
      if (ext && blo !== 0) {
        const line = msg.unallocatedWithBitmap();
        this.say(line);
        this.c.corruptions++;
        this.entryFinding('unallocated-with-bitmap', line, hi, lo, i, l2Off, active, l1Index, sn);
        if (inGuest) gm[g] = GuestState.Invalid;
      } else if (inGuest && bhi !== 0) gm[g] = GuestState.Zero;
      return;
    }
    // NORMAL or ZERO_ALLOC
    const off = (hi & C.L2E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
    if (ext && (bhi & blo) !== 0) {
      const line = msg.corruptedSubclusterBitmap(off.toString(16));
      this.say(line);
      this.c.corruptions++;
      this.entryFinding('subcluster-bitmap-corrupt', line, hi, lo, i, l2Off, active, l1Index, sn);
    }
    const unaligned = (lo & C.L2E_OFFSET_MASK_LO & (cs - 1)) !== 0;
    if (unaligned) {
      this.c.corruptions++;
      const containsData = ext ? blo !== 0 : !zeroFlag;
      const line = containsData ? msg.dataUnaligned(off.toString(16)) : msg.preallocUnaligned(off.toString(16));
      this.say(line);
      this.entryFinding(
        containsData ? 'data-unaligned' : 'prealloc-unaligned',
        line,
        hi,
        lo,
        i,
        l2Off,
        active,
        l1Index,
        sn,
      );
    }
    if (active) {
      this.l2Allocated++;
      if (this.l2NextContig !== 0 && off !== this.l2NextContig) this.l2Fragmented++;
      this.l2NextContig = off + cs;
      if (inGuest && !zeroFlag) {
        gm[g] = !ext
          ? GuestState.Data
          : (bhi & blo) !== 0
            ? GuestState.Invalid
            : blo === 0xffffffff
              ? GuestState.Data
              : blo === 0 && bhi === 0xffffffff
                ? GuestState.Zero
                : GuestState.Partial;
      }
    }
    if (this.dataFile) {
      if (copiedCheck && !(hi & C.OFLAG_COPIED_HI)) this.copiedReplay = true;
      if (active && off !== g * cs)
        this.an.add('external-data-mismatch', {
          referrer: { kind: 'l2', table: l2Off, index: i, guestOffset: g * cs },
        });
      return;
    }
    const role = active ? HostRole.Data : HostRole.SnapshotData;
    if (this.fits(off, cs)) this.incSpan(off, cs, role);
    else this.incRange(off, cs, role, this.where(hi, lo, i, l2Off, active, l1Index, sn));
    if (copiedCheck) this.markCopied(Math.floor(off / cs), (hi & C.OFLAG_COPIED_HI) !== 0);
  }

  private compressedEntry(
    hi: number,
    lo: number,
    bhi: number,
    blo: number,
    i: number,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
  ): void {
    const geo = this.image.geo;
    const hiBits = geo.csizeShift - 32; // offset bits held in hi
    if (hi & C.OFLAG_COPIED_HI) {
      const line = msg.compressedCopied(hex64(hi & (2 ** hiBits - 1), lo));
      this.say(line);
      this.c.corruptions++;
      this.entryFinding('compressed-copied', line, hi, lo, i, l2Off, active, l1Index, sn);
      hi = (hi & ~C.OFLAG_COPIED_HI) >>> 0;
    }
    if (this.dataFile) {
      const line = msg.compressedWithDataFile(i, hex64(hi, lo));
      this.say(line);
      this.c.corruptions++;
      this.entryFinding('compressed-with-data-file', line, hi, lo, i, l2Off, active, l1Index, sn);
      return;
    }
    if (bhi !== 0 || blo !== 0) {
      const line = msg.compressedWithBitmap(i, hex64(hi, lo));
      this.say(line);
      this.c.corruptions++;
      this.entryFinding('compressed-with-bitmap', line, hi, lo, i, l2Off, active, l1Index, sn);
      return;
    }
    const offHi = hi & (2 ** hiBits - 1);
    const offset = offHi * TWO32 + lo;
    const sectors = (Math.floor((hi & 0x3fffffff) / 2 ** hiBits) & geo.csizeMask) + 1;
    const size = sectors * C.SECTOR_SIZE - (lo & (C.SECTOR_SIZE - 1));
    if (this.fits(offset, size)) this.incSpan(offset, size, HostRole.Compressed);
    else
      this.incRange(
        offset,
        size,
        HostRole.Compressed,
        this.where(hi, lo, i, l2Off, active, l1Index, sn),
        hex64(offHi, lo),
      );
    if (active && this.compressedSamples.length < MAX_COMPRESSED_SAMPLES)
      this.compressedSamples.push({
        offset,
        size,
        l2Offset: l2Off,
        index: i,
        guestOffset: (l1Index * geo.l2Entries + i) * this.cs,
      });
    if (active) {
      this.c.allocatedClusters++;
      this.c.compressedClusters++;
      this.c.fragmentedClusters++;
    }
  }

  private where(
    hi: number,
    lo: number,
    i: number,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
  ): EntryFinding {
    const f: EntryFinding = {
      kind: '',
      table: active ? 'l2' : 'snapshot-l2',
      tableOffset: l2Off,
      index: i,
      entry: hex64(hi, lo),
      guestOffset: (l1Index * this.image.geo.l2Entries + i) * this.cs,
    };
    if (sn) f.snapshotId = sn.id;
    return f;
  }

  private entryFinding(
    kind: string,
    line: string,
    hi: number,
    lo: number,
    i: number,
    l2Off: number,
    active: boolean,
    l1Index: number,
    sn: CheckedSnapshot | undefined,
  ): void {
    const w = this.where(hi, lo, i, l2Off, active, l1Index, sn);
    w.kind = kind;
    this.find(w);
    this.an.add(kind, { qemuMessage: line, referrer: referrerOf(w) });
    this.an.cut();
  }

  private async checkBitmaps(): Promise<void> {
    const dir = this.bitmapDir;
    if (!dir) return;
    this.incRange(dir.offset, dir.size, HostRole.BitmapDirectory, { kind: 'bitmap-directory', table: 'header' });
    this.claimMeta(dir.offset, dir.size, HostRole.BitmapDirectory, 'bitmap directory');
    const names = new Set<string>();
    for (const bm of dir.bitmaps) {
      if (names.has(bm.name))
        this.an.add('bitmap-duplicate-name', { referrer: { kind: 'bitmap-directory', table: bm.entryOffset } });
      names.add(bm.name);
      this.incRange(bm.tableOffset, bm.tableSize * 8, HostRole.BitmapTable, {
        kind: 'bitmap-table',
        table: 'bitmap-directory',
        tableOffset: bm.entryOffset,
      });
      this.claimMeta(bm.tableOffset, bm.tableSize * 8, HostRole.BitmapTable, 'bitmap table');
      let t: Uint8Array;
      try {
        t = await loadBitmapTable(this.image, bm);
      } catch (e) {
        if (!(e instanceof BitmapError)) throw e;
        this.c.corruptions++;
        this.an.add('bitmap-invalid', { referrer: { kind: 'bitmap-directory', table: bm.entryOffset } });
        throw new Abort('Invalid argument');
      }
      for (let i = 0; i < bm.tableSize; i++) {
        const hi = u32(t, 8 * i);
        const lo = u32(t, 8 * i + 4);
        const off = (hi & C.BME_OFFSET_MASK_HI) * TWO32 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
        if (off === 0) continue;
        this.incRange(off, this.cs, HostRole.BitmapData, {
          kind: 'bitmap-data',
          table: 'bitmap-table',
          tableOffset: bm.tableOffset,
          index: i,
        });
        this.claimMeta(off, this.cs, HostRole.BitmapData, 'bitmap data');
      }
      if ((bm.flags & C.BME_FLAG_IN_USE) === 0) await this.bitmapTailBits(bm, t);
    }
  }

  /** Beyond QEMU: bits past the end of the disk in a bitmap's last data cluster must be zero. */
  private async bitmapTailBits(
    bm: { name: string; tableOffset: number; tableSize: number; granularityBits: number; entryOffset: number },
    t: Uint8Array,
  ): Promise<void> {
    const bits = Math.ceil(this.image.virtualSize / 2 ** bm.granularityBits);
    const bytes = Math.ceil(bits / 8);
    const last = Math.floor(Math.max(0, bytes - 1) / this.cs);
    if (last >= bm.tableSize) return;
    const off =
      (u32(t, 8 * last) & C.BME_OFFSET_MASK_HI) * TWO32 + ((u32(t, 8 * last + 4) & C.BME_OFFSET_MASK_LO) >>> 0);
    if (off === 0 || off >= this.fileSize) return;
    const data = await readPadded(this.image.io, off, this.cs);
    const firstBit = bits - last * this.cs * 8; // first unused bit inside this cluster
    let dirty = false;
    const byte = firstBit >>> 3;
    if (firstBit % 8 !== 0 && byte < data.length && data[byte]! >>> (firstBit % 8) !== 0) dirty = true;
    for (let b = Math.ceil(firstBit / 8); b < data.length && !dirty; b++) if (data[b] !== 0) dirty = true;
    if (dirty)
      this.an.add('bitmap-tail-bits', {
        cluster: Math.floor(off / this.cs),
        referrer: { kind: 'bitmap-table', table: bm.tableOffset, index: last },
      });
  }

  /** QEMU's check_refblocks. */
  private checkRefblocks(): void {
    const rt = this.image.reftable;
    const n = rt.length / 8;
    for (let i = nextNonZeroEntry(rt, 0, n); i < n; i = nextNonZeroEntry(rt, i + 1, n)) {
      const hi = u32(rt, 8 * i);
      const lo = u32(rt, 8 * i + 4);
      if (hi === 0 && lo === 0) continue;
      const where: EntryFinding = {
        kind: '',
        table: 'reftable',
        tableOffset: this.image.header.refcountTableOffset,
        index: i,
        entry: hex64(hi, lo),
      };
      const offset = hi * TWO32 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
      if (lo & C.REFT_RESERVED_MASK_LO) {
        const line = msg.reftableReserved(i);
        this.say(line);
        this.c.corruptions++;
        this.rebuild = true;
        this.find({ ...where, kind: 'reftable-reserved-bits' });
        this.an.add('reftable-reserved-bits', { qemuMessage: line, referrer: referrerOf(where) });
        this.an.cut();
        continue;
      }
      if (offset % this.cs !== 0) {
        const line = msg.refblockUnaligned(i);
        this.say(line);
        this.c.corruptions++;
        this.rebuild = true;
        this.find({ ...where, kind: 'refblock-unaligned', offset });
        this.an.add('refblock-unaligned', { qemuMessage: line, referrer: referrerOf(where) });
        this.an.cut();
        continue;
      }
      const cluster = offset / this.cs;
      if (cluster >= this.nbClusters()) {
        const line = msg.refblockOutside(i);
        this.say(line);
        this.c.corruptions++;
        this.find({ ...where, kind: 'refblock-outside', offset });
        this.an.add('refblock-outside', { qemuMessage: line, referrer: referrerOf(where) });
        this.an.cut();
        continue;
      }
      if (offset !== 0) {
        this.incRange(offset, this.cs, HostRole.RefcountBlock, where);
        this.claimMeta(offset, this.cs, HostRole.RefcountBlock, 'refcount block');
        const v = this.refAt(cluster);
        if (v !== 1) {
          const line = msg.refblockRefcount(i, v);
          this.say(line);
          this.c.corruptions++;
          this.rebuild = true;
          this.find({ ...where, kind: 'refblock-shared', offset, refcount: v });
          this.an.add('refblock-shared', { cluster, references: v, qemuMessage: line, referrer: referrerOf(where) });
          this.an.cut();
        }
      }
    }
  }

  // ---- QEMU's compare_refcounts (streaming the refcount blocks once) ------------------------

  private async compareRefcounts(): Promise<void> {
    const geo = this.image.geo;
    const E = geo.refcountBlockEntries;
    const order = geo.refcountOrder;
    const nb = this.nbClusters();
    const ref = this.ref;
    let rcBuf: Float64Array | undefined; // only for blocks the 16-bit quad compare can't take (E * 8 bytes)
    const rtEntries = this.image.reftable.length / 8;
    const blocksNeeded = Math.ceil(nb / E);
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / this.cs));
    let r0 = 0;
    const nextBatch = (): { r0: number; r1: number; offsets: number[] } | undefined => {
      if (r0 >= blocksNeeded) return undefined;
      const r1 = Math.min(blocksNeeded, r0 + perBatch);
      const offsets: number[] = [];
      for (let r = r0; r < r1; r++) {
        const off = this.lookup.blockOffset(r);
        if (off !== 0 && off % this.cs === 0) offsets.push(off);
      }
      const b = { r0, r1, offsets };
      r0 = r1;
      return b;
    };
    await pipeline(
      this.image.io,
      this.fileSize,
      this.cs,
      this.zeros,
      this.pools,
      nextBatch,
      ({ r0: first, r1: last }, blocks) => {
        this.checkCancel();
        for (let r = first; r < last; r++) {
          const base = r * E;
          const end = Math.min(nb, base + E);
          const off = r < rtEntries ? this.lookup.blockOffset(r) : 0;
          if (off !== 0 && off % this.cs !== 0) {
            // Every lookup through this entry fails (QEMU: -EIO, a check error per cluster).
            this.lookup.onUnaligned?.(r, off);
            for (let k = base; k < end; k++) {
              const line = msg.cantGetRefcount(k);
              this.say(line);
              this.c.checkErrors++;
              this.an.add('refcount-unreadable', { cluster: k, qemuMessage: line });
            }
            continue;
          }
          const block = off === 0 ? this.zeros : blocks.get(off)!;
          if (order === 4 && block.byteOffset % 4 === 0 && base % 4 === 0) {
            // Page by page of the IMRT: a stretch counted once and never written (virtual) needs
            // only the block compared with ones; elsewhere a fully used stretch (every cluster
            // referenced once, refcount 1) is still the common case.
            for (let pa = base; pa < end; ) {
              // The stretch of pages from pa that runs cover, or else pa's page alone.
              let pb = Math.min(end, (Math.floor(pa / IMRT_PAGE) + 1) * IMRT_PAGE);
              const covered = this.imrt.runCovers(pa, pb);
              while (covered && pb < end) {
                const next = Math.min(end, pb + IMRT_PAGE);
                if (!this.imrt.runCovers(pb, next)) break;
                pb = next;
              }
              const part = block.subarray(2 * (pa - base));
              if (covered && this.blockOnes16(part, pa, pb)) this.high = pb - 1;
              else if (!covered && this.imrt.untouched(pa) && isZero(part.subarray(0, 2 * (pb - pa)), this.zeros)) {
                // Nothing counted, nothing stored: free clusters, memory left unread.
              } else {
                this.imrt.prepareBytes(pa, pb, false);
                if (this.allOnes16(part, pa, pb)) this.high = pb - 1;
                else this.compareQuads16(part, pa, pb);
              }
              pa = pb;
            }
          } else {
            this.imrt.prepareBytes(base, end, false);
            rcBuf ??= new Float64Array(E);
            decodeBlock(block, order, rcBuf, end - base);
            for (let k = base; k < end; k++) {
              const rc = rcBuf[k - base]!;
              let rf = ref[k]!;
              if (rf === WIDE_SENTINEL && this.wide) rf = this.over.get(k)!;
              if (rc !== 0 || rf !== 0) {
                this.high = k;
                if (rc !== rf) this.mismatch(k, rc, rf);
              }
            }
          }
          // The rest of the last block: refcounts of clusters past the end of the image.
          if (end === nb && end < base + E && r < rtEntries) this.refcountsPastRange(block, r, end - base);
          this.work(1, 'refcount blocks');
        }
      },
      this.listened,
    );
    this.scanCopiedClear();
    await this.refcountsBeyondEof(nb);
  }

  private ones16?: Buffer;

  /** Whether clusters [base, end) each have one reference and a 16-bit refcount of 1 (a memcmp). */
  private allOnes16(block: Uint8Array, base: number, end: number): boolean {
    if ((end - base) % 4 !== 0 || this.ref.byteOffset !== 0) return false;
    const rw = new Int32Array(this.ref.buffer, base, (end - base) >>> 2);
    for (let q = 0; q < rw.length; q++) if (rw[q] !== 0x01010101) return false;
    return this.blockOnes16(block, base, end);
  }

  /** Whether the 16-bit refcounts of clusters [base, end) in their block are all 1 (a memcmp). */
  private blockOnes16(block: Uint8Array, base: number, end: number): boolean {
    const bytes = 2 * (end - base);
    // Compared a piece at a time against a small pattern: a block-sized one would cost its page faults.
    const ones = (this.ones16 ??= Buffer.alloc(ONES_PIECE, Uint8Array.of(0, 1)));
    for (let at = 0; at < bytes; at += ONES_PIECE) {
      const n = Math.min(ONES_PIECE, bytes - at);
      if (!Buffer.from(block.buffer, block.byteOffset + at, n).equals(ones.subarray(0, n))) return false;
    }
    return true;
  }

  /**
   * Compare one 16-bit refcount block with the IMRT four clusters at a time: when the block's high
   * bytes are zero and its low bytes equal the IMRT's bytes (all below 128, so no wide counts), the
   * four refcounts match. Anything else is looked at cluster by cluster.
   */
  private compareQuads16(block: Uint8Array, base: number, end: number): void {
    const ref = this.ref;
    const bw = new Uint32Array(block.buffer, block.byteOffset, block.byteLength >>> 2);
    const quads = (end - base) >>> 2;
    const rw = new Uint32Array(ref.buffer, ref.byteOffset + base, quads);
    let high = -1;
    let hq = -1; // last quad matched whole with a non-zero count (its exact cluster is found at the end)
    for (let q = 0; q < quads; q++) {
      const a = bw[2 * q]!;
      const b = bw[2 * q + 1]!;
      const y = rw[q]!;
      // The common cases first: four clusters referenced once (00 01 00 01 ...), or four free ones.
      if (y === 0x01010101) {
        if (a === 0x01000100 && b === 0x01000100) {
          hq = q;
          continue;
        }
      } else if (y === 0 && (a | b) === 0) continue;
      if (((a | b) & 0x00ff00ff) === 0 && (y & 0x80808080) === 0) {
        const packed = (((a >>> 8) & 0xff) | ((a >>> 16) & 0xff00) | ((b << 8) & 0xff0000) | (b & 0xff000000)) >>> 0;
        if (packed === y) {
          if (y !== 0) hq = q;
          continue;
        }
      }
      for (let h = 0; h < 4; h++) {
        const k = base + 4 * q + h;
        const j = 2 * (k - base);
        const rc = (block[j]! << 8) | block[j + 1]!;
        const rf = this.refAt(k);
        if (rc !== 0 || rf !== 0) {
          high = k;
          if (rc !== rf) this.mismatch(k, rc, rf);
        }
      }
    }
    if (hq >= 0 && base + 4 * hq > high) {
      const y = rw[hq]!;
      high = base + 4 * hq + (y >>> 24 !== 0 ? 3 : (y & 0xff0000) !== 0 ? 2 : (y & 0xff00) !== 0 ? 1 : 0);
    }
    if (high >= 0) this.high = high;
    for (let k = base + 4 * quads; k < end; k++) {
      const rc = (block[2 * (k - base)]! << 8) | block[2 * (k - base) + 1]!;
      const rf = this.refAt(k);
      if (rc !== 0 || rf !== 0) {
        this.high = k;
        if (rc !== rf) this.mismatch(k, rc, rf);
      }
    }
  }

  private mismatch(k: number, rc: number, rf: number): void {
    if (rc === 0) this.rebuild = true;
    if (k < this.fileClusters) {
      const bit = 1 << (k & 7);
      if (
        ((this.copiedSet[k >>> 3]! & bit) !== 0 && rc !== 1) ||
        (this.anyCopiedClear && (this.copiedClear[k >>> 3]! & bit) !== 0 && rc === 1)
      )
        this.copiedReplay = true;
    }
    if (this.roleMap && rc > 0 && rf > 0 && rc > rf && this.roleMap[k] === HostRole.Free)
      this.roleMap[k] = HostRole.Corrupt;
    const line = msg.refcountMismatch(k, rc, rf);
    this.say(line);
    if (rc < rf) {
      this.c.corruptions++;
      this.an.add(rc === 0 ? 'refcount-zero-referenced' : 'refcount-too-low', {
        cluster: k,
        refcount: rc,
        references: rf,
        qemuMessage: line,
      });
    } else {
      this.c.leaks++;
      this.an.add('leaked-cluster', { cluster: k, refcount: rc, references: rf, qemuMessage: line });
      if (this.roleMap && rf === 0) this.roleMap[k] = HostRole.Leaked;
    }
    if (this.roleMap && rc < rf && this.roleMap[k] !== HostRole.Free) this.roleMap[k] = HostRole.Corrupt;
  }

  /** Beyond QEMU: non-zero refcounts for clusters past the compared range (QEMU never looks). */
  private async refcountsBeyondEof(nb: number): Promise<void> {
    const E = this.image.geo.refcountBlockEntries;
    const rtEntries = this.image.reftable.length / 8;
    let budget = 64; // blocks examined at most: cheap, bounded
    const rt = this.image.reftable;
    // The block holding cluster nb (if it is not the first of its block) was seen by the compare.
    for (
      let r = nextNonZeroEntry(rt, Math.ceil(nb / E), rtEntries);
      r < rtEntries && budget > 0;
      r = nextNonZeroEntry(rt, r + 1, rtEntries)
    ) {
      const off = this.lookup.blockOffset(r);
      if (off === 0 || off % this.cs !== 0 || off >= this.fileSize) continue;
      budget--;
      const pool = this.pools[0]!; // idle now: its arena is already faulted in
      pool.release();
      const block = (await readRangesInto(this.image.io, this.fileSize, [off], this.cs, this.zeros, pool)).get(off)!;
      this.refcountsPastRange(block, r, 0);
    }
  }

  /** Non-zero refcounts in block r from entry `from` on: clusters past the image's end, never referenced. */
  private refcountsPastRange(block: Uint8Array, r: number, from: number): void {
    const geo = this.image.geo;
    const E = geo.refcountBlockEntries;
    // Nearly always zero: such blocks are skipped undecoded.
    if (isZero(block.subarray(Math.floor((from << geo.refcountOrder) / 8)), this.zeros)) return;
    const rc = (this.rcPast ??= new Float64Array(E));
    decodeBlock(block, geo.refcountOrder, rc, E);
    for (let j = from; j < E; j++) {
      if (rc[j] === 0) continue;
      const k = r * E + j;
      this.an.add('refcount-beyond-eof', { cluster: k, refcount: rc[j]!, references: 0 });
      if (this.roleMap && k < this.roleMap.length) this.roleMap[k] = HostRole.BeyondEof;
    }
  }

  private rcPast?: Float64Array;

  // ---- QEMU's check_oflag_copied (only re-walked when the first pass saw a disagreement) -----

  private async checkOflagCopied(): Promise<void> {
    if (!this.copiedReplay) return;
    const l1 = this.image.l1;
    const n = l1.length / 8;
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / this.cs));
    const geo = this.image.geo;
    for (let i = 0; i < n; ) {
      this.checkCancel();
      const batch: number[] = [];
      const offsets: number[] = [];
      let j = i;
      for (; j < n && batch.length < perBatch; j++) {
        const hi = u32(l1, 8 * j);
        const lo = u32(l1, 8 * j + 4);
        const off = (hi & C.L1E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
        if (off === 0) continue;
        batch.push(j);
        offsets.push(off);
      }
      const tables = await readRanges(this.image.io, this.fileSize, offsets, this.cs, this.zeros);
      for (let b = 0; b < batch.length; b++) {
        const idx = batch[b]!;
        const hi = u32(l1, 8 * idx);
        const lo = u32(l1, 8 * idx + 4);
        const l2Off = offsets[b]!;
        const rc = await this.lookup.get(Math.floor(l2Off / this.cs));
        if (rc !== LOOKUP_FAILED && (rc === 1) !== ((hi & C.OFLAG_COPIED_HI) !== 0)) {
          const line = msg.copiedL2(idx, hex64(hi, lo), rc);
          this.say(line);
          this.c.corruptions++;
          const w: EntryFinding = {
            kind: 'copied-l1',
            table: 'l1',
            tableOffset: this.image.header.l1TableOffset,
            index: idx,
            entry: hex64(hi, lo),
            refcount: rc,
          };
          this.find(w);
          this.an.add('copied-l1', {
            cluster: Math.floor(l2Off / this.cs),
            refcount: rc,
            qemuMessage: line,
            referrer: referrerOf(w),
          });
          this.an.cut();
        }
        const buf = tables.get(l2Off)!;
        const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        for (let e = 0; e < geo.l2Entries; e++) {
          const p = e * geo.l2EntrySize;
          const ehi = dv.getUint32(p);
          const elo = dv.getUint32(p + 4);
          if ((ehi | elo) === 0 || ehi & C.OFLAG_COMPRESSED_HI) continue;
          const hasOff = (ehi & C.L2E_OFFSET_MASK_HI) !== 0 || (elo & C.L2E_OFFSET_MASK_LO) !== 0;
          const normal =
            !this.ext && elo & C.OFLAG_ZERO_LO ? hasOff : hasOff || (this.dataFile && (ehi & C.OFLAG_COPIED_HI) !== 0);
          if (!normal) continue;
          const off = (ehi & C.L2E_OFFSET_MASK_HI) * TWO32 + ((elo & C.L2E_OFFSET_MASK_LO) >>> 0);
          const erc = this.dataFile ? 1 : await this.lookup.get(Math.floor(off / this.cs));
          if (erc === LOOKUP_FAILED) continue;
          if ((erc === 1) !== ((ehi & C.OFLAG_COPIED_HI) !== 0)) {
            const line = msg.copiedData(hex64(ehi, elo), erc);
            this.say(line);
            this.c.corruptions++;
            const w = this.where(ehi, elo, e, l2Off, true, idx, undefined);
            w.kind = 'copied-l2';
            w.refcount = erc;
            this.find(w);
            this.an.add('copied-l2', {
              cluster: Math.floor(off / this.cs),
              refcount: erc,
              qemuMessage: line,
              referrer: referrerOf(w),
            });
            this.an.cut();
          }
        }
      }
      i = j;
    }
  }

  // ---- before the walk: bitmaps as QEMU loads them at open, the snapshot-table pre-check ----

  private async openBitmaps(): Promise<void> {
    const img = this.image;
    if (img.header.bitmaps && !bitmapsActive(img)) {
      // QEMU warns while opening and then ignores the extension (its clusters show up as leaks).
      this.say(
        img.header.version === 2
          ? 'qemu-img: warning: This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent'
          : 'qemu-img: warning: a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent',
      );
      this.say(BITMAPS_LEAK_HINT);
      this.an.add('bitmaps-inconsistent');
      return;
    }
    if (!bitmapsActive(img)) return;
    try {
      this.bitmapDir = await loadBitmapDirectory(img);
      // QEMU loads the tables of bitmaps not marked in-use while opening.
      for (const bm of this.bitmapDir.bitmaps) if ((bm.flags & C.BME_FLAG_IN_USE) === 0) await loadBitmapTable(img, bm);
    } catch (e) {
      if (!(e instanceof BitmapError)) throw e;
      this.c.checkErrors++;
      this.an.add('bitmap-invalid', { referrer: { kind: e.field } });
      throw new Abort(e.reason, true);
    }
  }

  private async snapshotPrecheck(): Promise<void> {
    const img = this.image;
    const header = await readPadded(img.io, 0, 72);
    const p = await precheckSnapshotTable(img.io, this.fileSize, header, this.cs, img.header.version);
    for (const l of p.lines) this.say(l.program ? `qemu-img: ${l.text}` : l.text);
    this.c.corruptions += p.corruptions;
    this.c.checkErrors += p.checkErrors;
    for (const s of p.snapshots) {
      if (s.extraDataSize < C.SNAPSHOT_EXTRA_V3_MIN && img.header.version >= 3) {
        this.find({
          kind: 'snapshot-incomplete',
          table: 'snapshot-table',
          tableOffset: s.entryOffset,
          index: s.index,
          snapshotId: s.id,
        });
        this.an.add('snapshot-incomplete', {
          qemuMessage: msg.snapshotIncomplete(s.index),
          referrer: { kind: 'snapshot-table', index: s.index, snapshotId: s.id },
        });
        this.an.cut();
      }
    }
    if (p.failed) throw new Abort(p.failed);
    this.snapshots = p.snapshots;
    this.snapshotTableSize = p.tableSize;
  }

  /**
   * Attach the referrers of clusters in trouble to their anomalies (bounded: the first clusters of
   * each run, at most MAX_EXPLAINED in all), with one more pass over the metadata.
   */
  private async nameReferrers(): Promise<void> {
    const kinds = new Set([
      'refcount-too-low',
      'refcount-zero-referenced',
      'leaked-cluster',
      'refblock-shared',
      'refcount-overflow',
      'metadata-overlap',
    ]);
    const targets = new Set<number>();
    const runs = this.an.list.filter(
      (a) => kinds.has(a.kind) && a.firstCluster !== undefined && !(a.kind === 'leaked-cluster' && a.references === 0),
    );
    for (const a of runs) {
      for (let c = a.firstCluster!; c < a.firstCluster! + Math.min(a.count, 8) && targets.size < MAX_EXPLAINED; c++)
        targets.add(c);
    }
    if (targets.size === 0) return;
    this.checkCancel();
    const found = await findReferrers(this.image, targets, 16);
    for (const a of runs) {
      const refs: Referrer[] = [];
      for (let c = a.firstCluster!; c < a.firstCluster! + a.count && refs.length < 32; c++)
        refs.push(...(found.get(c)?.referrers ?? []));
      if (refs.length) a.referrers = [...(a.referrers ?? []), ...refs].slice(0, 32);
    }
  }

  /** Beyond QEMU: decode a sample of compressed clusters. */
  private async checkCompressedSamples(): Promise<void> {
    for (const smp of this.compressedSamples) {
      if (!(await decodes(this.image, smp.offset, smp.size)))
        this.an.add('compressed-undecodable', {
          cluster: Math.floor(smp.offset / this.cs),
          referrer: { kind: 'l2', table: smp.l2Offset, index: smp.index, guestOffset: smp.guestOffset },
        });
    }
  }

  private extraHeaderFindings(): void {
    // QEMU refuses to check an image whose backing or data file is missing; we check the metadata
    // anyway and say so.
    const h = this.image.header;
    const missing = (name: string | undefined): boolean => {
      if (!name || name.includes(':') || !this.image.io.name) return false;
      return !existsSync(resolve(dirname(this.image.io.name), name));
    };
    if (h.backingFile !== undefined && missing(h.backingFile))
      this.an.add('backing-file-missing', { referrer: { kind: 'header' } });
    if (this.dataFile && missing(h.dataFileName)) this.an.add('data-file-missing', { referrer: { kind: 'header' } });
    if (this.image.isDirty) this.an.add('dirty-bit');
    if (this.image.isCorrupt) this.an.add('corrupt-bit');
  }
}

function referrerOf(w: EntryFinding): {
  kind: string;
  table?: number;
  index?: number;
  guestOffset?: number;
  snapshotId?: string;
} {
  const r: { kind: string; table?: number; index?: number; guestOffset?: number; snapshotId?: string } = {
    kind: w.table ?? w.kind,
  };
  if (w.tableOffset !== undefined) r.table = w.tableOffset;
  if (w.index !== undefined) r.index = w.index;
  if (w.guestOffset !== undefined) r.guestOffset = w.guestOffset;
  if (w.snapshotId !== undefined) r.snapshotId = w.snapshotId;
  return r;
}

/** Decode the first `count` refcounts of a refcount block into `out`. */
export function decodeBlock(b: Uint8Array, order: number, out: Float64Array, count: number): void {
  switch (order) {
    case 4:
      for (let j = 0; j < count; j++) out[j] = (b[2 * j]! << 8) | b[2 * j + 1]!;
      return;
    case 3:
      for (let j = 0; j < count; j++) out[j] = b[j]!;
      return;
    case 5:
      for (let j = 0; j < count; j++) {
        const o = 4 * j;
        out[j] = ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
      }
      return;
    case 6:
      for (let j = 0; j < count; j++) {
        const o = 8 * j;
        const hi = ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
        const lo = ((b[o + 4]! << 24) >>> 0) + ((b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!);
        out[j] = hi * TWO32 + lo;
      }
      return;
    default: {
      const bits = 1 << order;
      const per = 8 >>> order;
      const mask = (1 << bits) - 1;
      for (let j = 0; j < count; j++) out[j] = (b[Math.floor(j / per)]! >>> (bits * (j % per))) & mask;
    }
  }
}
