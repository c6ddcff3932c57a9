// The ordered write path: guest writes, zero writes, discards, compressed writes, L1 growth and
// resize on an opened qcow2 image. Order rules (qcow2.md §5.1), enforced by the table caches'
// dependencies and a few explicit barriers, never by a flush per update:
//   allocate before reference · fill before link · data before mapping · unreference before free ·
//   reuse a freed cluster only after the removal is durable.
// On any I/O error the operation is backed out: in memory alone when it had written no metadata to
// the disk (op-undo.ts); otherwise the writer drops its in-memory state and reloads it from disk
// (which, by the rules above, is consistent: at worst leaks; under lazy refcounts the refcounts are
// recounted from the references on disk). Then it reports the error as a WriteError.
import * as C from '../format/constants.js';
import { putU32, putU64, u32 } from '../format/bytes.js';
import type { Geometry, Qcow2Header } from '../format/header.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { Allocator, type AllocatorHost } from './allocator.js';
import { TableCache, type WriteOrdering } from './table-cache.js';
import { clusterContents, readGuest } from './guest-read.js';
import { writeCompressedCluster } from './compressed-write.js';
import { growL1Table, growVirtualSize } from './resize.js';
import type { WriterOptions, WriterStats } from './writer-options.js';
import { WriteError } from './write-error.js';
import { rebuildRefcountsInPlace, recountRefcountBlocks } from './dirty-repair.js';
import { OverlapError, OverlapGuard, type MetadataKind } from './overlap.js';
import { WriteCountingIO } from './write-counting-io.js';
import { OpUndo } from './op-undo.js';
import { refuseUnwritable } from './writable.js';

export type { BackingGuest, WriterOptions, WriterStats } from './writer-options.js';

export class Qcow2Writer implements AllocatorHost {
  readonly refCache: TableCache;
  readonly l2Cache: TableCache;
  readonly alloc: Allocator;
  readonly ordering: WriteOrdering;
  readonly stats: WriterStats = { flushes: 0, allocatingWrites: 0, guestWrites: 0 };
  barriers = 0;
  /** Active L1 table (raw big-endian), l1Size entries. */
  l1: Uint8Array;
  private queue: Promise<unknown> = Promise.resolve();
  private broken: string | null = null;
  /** Next free byte for compressed data (0: none); in-memory only. */
  freeByteOffset = 0;
  /** Lazy refcounts in effect, and whether the dirty bit is set on disk. */
  readonly lazy: boolean;
  private dirtyOnDisk = false;
  /** The last compressed cluster read (COW of neighbouring writes reads it again). */
  lastDecompressed: { off: number; data: Uint8Array } | null = null;
  /** Refuses writes onto metadata (images whose refcounts or entries are wrong). */
  readonly overlap: OverlapGuard;
  readonly io: WriteCountingIO;
  /** The running operation's undo state (null between operations and for reads). */
  private undo: OpUndo | null = null;

  private constructor(
    io: PositionalIO,
    public header: Qcow2Header,
    readonly geo: Geometry,
    l1: Uint8Array,
    reftable: Uint8Array,
    fileSize: number,
    private readonly opts: WriterOptions,
  ) {
    this.io = new WriteCountingIO(io);
    this.ordering = opts.ordering ?? 'ordered';
    this.l1 = l1;
    const cap = Math.max(4, opts.cacheTables ?? 256);
    this.refCache = new TableCache('refcount', this, geo.clusterSize, cap, 'refblock_load', 'refblock_update_part');
    this.l2Cache = new TableCache('l2', this, geo.clusterSize, cap, 'l2_load', 'l2_update');
    this.alloc = new Allocator(this, reftable, header.refcountTableOffset, fileSize);
    this.alloc.onReftableMoved = (off, clusters) => {
      this.header.refcountTableOffset = off;
      this.header.refcountTableClusters = clusters;
    };
    this.overlap = new OverlapGuard(() => ({
      io: this.io,
      header: this.header,
      clusterSize: this.geo.clusterSize,
      l1: this.l1,
      reftable: this.alloc.reftable,
    }));
    this.lazy = opts.lazyRefcounts ?? (header.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
    this.dirtyOnDisk = (header.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
  }

  /**
   * Open an image for writing (or, with readOnly, for guest reads). Refuses what this writer does
   * not maintain. A dirty image (lazy refcounts, not closed cleanly) is repaired first, as QEMU
   * does on a read-write open.
   */
  static async open(io: PositionalIO, opts: WriterOptions = {}): Promise<Qcow2Writer> {
    const img = await Qcow2Image.open(io);
    const h = img.header;
    if (!opts.readOnly) refuseUnwritable(img, io, opts);
    const w = new Qcow2Writer(io, h, img.geo, img.l1.slice(), img.reftable.slice(), img.fileSize, opts);
    if (!opts.readOnly && w.dirtyOnDisk) await w.repairDirty();
    return w;
  }

  get clusterSize(): number {
    return this.geo.clusterSize;
  }

  get virtualSize(): number {
    return this.header.size;
  }

  // ---- CacheHost / AllocatorHost ----

  event(name: string): void {
    this.io.event?.(name);
  }

  async barrier(): Promise<void> {
    if (this.ordering === 'unordered') return;
    this.event('flush_to_disk');
    await this.io.flush();
    this.barriers++;
    this.stats.flushes++;
  }

  async guardFree(first: number, count: number): Promise<void> {
    await this.overlap.check(first * this.clusterSize, count * this.clusterSize);
  }

  onStructureChanged(): void {
    this.overlap.invalidate();
  }

  async guardWrite(offset: number, length: number, cache: string): Promise<void> {
    const own: MetadataKind = cache === 'l2' ? 'active L2 table' : 'refcount block';
    await this.overlap.check(offset, length, [own]);
  }

  onClusterFreed(cluster: number): void {
    this.overlap.invalidate();
    const off = cluster * this.clusterSize;
    this.l2Cache.discard(off);
    this.refCache.discard(off);
    if (this.freeByteOffset && Math.floor(this.freeByteOffset / this.clusterSize) === cluster) this.freeByteOffset = 0;
    if (this.lastDecompressed && Math.floor(this.lastDecompressed.off / this.clusterSize) === cluster)
      this.lastDecompressed = null;
  }

  // ---- serialisation and error handling ----

  /** Run one operation at a time; on failure back it out (in memory, or by a reload from disk) and report. */
  async run<T>(operation: string, fn: () => Promise<T>, writes = true): Promise<T> {
    const job = this.queue.then(async () => {
      if (this.broken) throw new WriteError(operation, `the writer is unusable: ${this.broken}`, { usage: true });
      if (writes && this.opts.readOnly) throw new WriteError(operation, 'opened read-only', { usage: true });
      const undo = this.opts.readOnly ? null : new OpUndo(this, this.io);
      this.undo = undo;
      try {
        return await fn();
      } catch (e) {
        const exact = undo?.exact ?? false;
        if (exact) undo!.rollback();
        return await this.failed(operation, e, exact);
      } finally {
        this.undo = null;
        undo?.end();
      }
    });
    this.queue = job.catch(() => undefined);
    return job;
  }

  /** After a failed operation (already backed out in memory when it could be): reload if needed, report. */
  private async failed(operation: string, e: unknown, backedOut: boolean): Promise<never> {
    if (e instanceof WriteError && e.usage) throw e;
    if (e instanceof OverlapError) {
      // As QEMU: mark the image corrupt so nothing writes to it before a check and repair.
      this.broken = e.message;
      await this.markCorrupt().catch(() => undefined);
      throw new WriteError(operation, `${e.message}; image marked corrupt, check and repair it`, { cause: e });
    }
    if (!backedOut) {
      try {
        await this.reload();
      } catch (e2) {
        this.broken = `reload after failure failed: ${e2 instanceof Error ? e2.message : String(e2)}`;
      }
    }
    if (e instanceof WriteError) throw new WriteError(operation, e.message, { cause: e });
    throw new WriteError(operation, e instanceof Error ? e.message : String(e), { cause: e });
  }

  private async markCorrupt(): Promise<void> {
    const f = this.header.incompatibleFeatures | C.INCOMPAT_CORRUPT;
    const b = new Uint8Array(8);
    putU64(b, 0, f);
    this.event('header_update');
    await this.io.write(C.HDR.incompatibleFeatures, b);
    await this.io.flush();
    this.header.incompatibleFeatures = f;
  }

  /** Back out every in-memory change: forget caches and state, re-read them from disk. */
  private async reload(): Promise<void> {
    this.overlap.invalidate();
    this.refCache.clear();
    this.l2Cache.clear();
    this.freeByteOffset = 0;
    this.lastDecompressed = null;
    const img = await Qcow2Image.open(this.io);
    this.header = img.header;
    this.l1 = img.l1.slice();
    this.alloc.reset(img.reftable.slice(), img.header.refcountTableOffset, img.fileSize);
    this.dirtyOnDisk = img.isDirty;
    // Dirty (lazy refcounts): the refcounts on disk lag behind the references on disk, so clusters
    // that earlier writes mapped may read as free there. Recount from the references into the
    // cache (dirty; written by close, as the dirty bit already covers them) before anything allocates.
    if (this.dirtyOnDisk)
      for (const [off, block] of await recountRefcountBlocks(this)) await this.refCache.put(off, block);
  }

  // ---- L1 / L2 helpers ----

  l1Entry(i: number): [number, number] {
    return [u32(this.l1, i * 8), u32(this.l1, i * 8 + 4)];
  }

  setL1Entry(i: number, hi: number, lo: number): void {
    this.undo?.noteL1();
    putU32(this.l1, i * 8, hi);
    putU32(this.l1, i * 8 + 4, lo);
  }

  /** Write one L1 entry (8 bytes, inside one sector: atomic) and make it durable. */
  async writeL1Entry(i: number): Promise<void> {
    await this.markDirtyIfLazy();
    await this.overlap.check(this.header.l1TableOffset + i * 8, 8, ['active L1 table']);
    this.event('l1_update');
    await this.io.write(this.header.l1TableOffset + i * 8, this.l1.slice(i * 8, i * 8 + 8));
    await this.barrier();
  }

  /** Write the whole active L1 table and make it durable. */
  async writeL1Table(): Promise<void> {
    await this.markDirtyIfLazy();
    await this.overlap.check(this.header.l1TableOffset, this.l1.length, ['active L1 table']);
    this.event('l1_update');
    await this.io.write(this.header.l1TableOffset, this.l1);
    this.overlap.invalidate();
    await this.barrier();
  }

  /** The L2 entry mapping guest cluster `gc`, or null when no L2 table covers it. */
  async lookup(gc: number): Promise<{ l2off: number; index: number; hi: number; lo: number } | null> {
    const l1i = Math.floor(gc / this.geo.l2Entries);
    if (l1i >= this.header.l1Size) return null;
    const [h1, l1lo] = this.l1Entry(l1i);
    const l2off = l1Offset(h1, l1lo);
    if (l2off === 0) return null;
    const index = gc % this.geo.l2Entries;
    const l2 = await this.l2Cache.get(l2off);
    return { l2off, index, hi: u32(l2, index * 8), lo: u32(l2, index * 8 + 4) };
  }

  /**
   * An L2 table for L1 index `l1i` that may be modified in place (COPIED): allocate a new one, or
   * copy a shared one (L2 COW). Order: refcount durable → table durable → L1 entry durable → only
   * then the old table's refcount drops.
   */
  async l2ForWrite(l1i: number): Promise<number> {
    if (l1i >= this.header.l1Size)
      throw new WriteError('L2 lookup', `L1 index ${l1i} beyond l1_size ${this.header.l1Size}`);
    const [hi, lo] = this.l1Entry(l1i);
    const old = l1Offset(hi, lo);
    if (old !== 0 && (hi & C.OFLAG_COPIED_HI) !== 0) return old;
    const cs = this.clusterSize;
    const off = (await this.alloc.alloc(1)) * cs;
    if (off === 0) throw new WriteError('L2 allocation', 'Preventing invalid allocation of L2 table at offset 0');
    let table: Uint8Array;
    if (old !== 0) {
      this.event('l2_alloc_cow_read');
      table = (await this.l2Cache.get(old)).slice();
    } else {
      table = new Uint8Array(cs);
    }
    await this.refCache.flush(); // allocate before reference
    await this.l2Cache.put(off, table);
    this.event('l2_alloc_write');
    await this.l2Cache.flush(); // fill before link
    this.setL1Entry(l1i, (C.OFLAG_COPIED_HI | Math.floor(off / 0x1_0000_0000)) >>> 0, off >>> 0);
    await this.writeL1Entry(l1i);
    this.overlap.invalidate();
    if (old !== 0) await this.alloc.free(old / cs, 1); // unreference (durable) before free
    return off;
  }

  /** Set an L2 entry in the cache (the table is writable). */
  private async setL2Entry(l2off: number, index: number, hi: number, lo: number): Promise<void> {
    await this.markDirtyIfLazy();
    const l2 = await this.l2Cache.get(l2off);
    putU32(l2, index * 8, hi);
    putU32(l2, index * 8 + 4, lo);
    await this.l2Cache.markDirty(l2off);
  }

  /** Drop the references an old L2 entry held (after the entry was replaced in the L2 cache). */
  private async releaseEntry(hi: number, lo: number): Promise<void> {
    const t = classifyL2(hi, lo, false, false);
    const cs = this.clusterSize;
    if (t !== ClusterType.Normal && t !== ClusterType.ZeroAlloc && t !== ClusterType.Compressed) return;
    // Unreference before free: the refcount drop may reach the disk only after the L2 update.
    if (!this.lazy) await this.refCache.setDependency(this.l2Cache);
    if (t === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, this.geo);
      const first = Math.floor(d.offset / cs);
      const last = Math.floor((d.offset + d.size - 1) / cs);
      await this.alloc.free(first, last - first + 1);
    } else {
      await this.alloc.free(l2Offset(hi, lo) / cs, 1);
    }
  }

  // ---- guest reads ----

  /** Read guest bytes (zeros past the virtual size are not returned: the range is clipped). */
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.run(`guest read at 0x${offset.toString(16)}`, () => readGuest(this, offset, length), false);
  }

  // ---- guest writes ----

  /** Write guest bytes. Whole-cluster-aligned data goes straight to a new cluster; partial clusters COW. */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.run(`guest write at 0x${offset.toString(16)}`, async () => {
      this.checkRange(offset, data.length);
      const cs = this.clusterSize;
      let pos = 0;
      while (pos < data.length) {
        const g = offset + pos;
        const gc = Math.floor(g / cs);
        const inC = g - gc * cs;
        const n = Math.min(cs - inC, data.length - pos);
        await this.writeInCluster(gc, inC, data.subarray(pos, pos + n));
        pos += n;
      }
      this.stats.guestWrites++;
    });
  }

  checkRange(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.header.size)
      throw new WriteError(
        `guest range 0x${offset.toString(16)}+${length}`,
        `beyond the virtual size ${this.header.size}`,
        { usage: true },
      );
  }

  async writeInCluster(gc: number, inC: number, data: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const l1i = Math.floor(gc / this.geo.l2Entries);
    const index = gc % this.geo.l2Entries;
    const l2off = await this.l2ForWrite(l1i);
    const l2 = await this.l2Cache.get(l2off);
    const hi = u32(l2, index * 8);
    const lo = u32(l2, index * 8 + 4);
    const t = classifyL2(hi, lo, false, false);
    if (t === ClusterType.Normal && (hi & C.OFLAG_COPIED_HI) !== 0) {
      // Ours alone: overwrite in place, no metadata change.
      await this.overlap.check(l2Offset(hi, lo) + inC, data.length);
      this.event('write_aio');
      await this.io.writeData(l2Offset(hi, lo) + inC, data);
      return;
    }
    // Allocate a new cluster, fill it completely (COW of the old contents), then map it.
    const nc = await this.alloc.alloc(1);
    this.stats.allocatingWrites++;
    let buf: Uint8Array;
    if (inC === 0 && data.length === cs) {
      buf = data;
    } else {
      this.event('cow_read');
      buf = await clusterContents(this, gc, hi, lo);
      buf.set(data, inC);
      this.event('cow_write');
    }
    this.event('write_aio');
    await this.io.writeData(nc * cs, buf);
    await this.linkCluster(
      l2off,
      index,
      (C.OFLAG_COPIED_HI | Math.floor((nc * cs) / 0x1_0000_0000)) >>> 0,
      (nc * cs) >>> 0,
      hi,
      lo,
    );
  }

  /**
   * Point an L2 entry at freshly written data: the data must be durable before the entry (flush
   * dependency), the new refcount before the entry (cache dependency); then the old target is
   * released (its refcount drop ordered after the entry).
   */
  async linkCluster(l2off: number, index: number, hi: number, lo: number, oldHi: number, oldLo: number): Promise<void> {
    this.l2Cache.setDependsOnFlush();
    if (!this.lazy) await this.l2Cache.setDependency(this.refCache);
    await this.setL2Entry(l2off, index, hi, lo);
    await this.releaseEntry(oldHi, oldLo);
  }

  /**
   * Zero a range. Whole clusters become zero entries (v3) or unallocated (v2 without backing);
   * partial clusters are written with zeros.
   */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.run(`zero write at 0x${offset.toString(16)}`, async () => {
      this.checkRange(offset, length);
      const v3 = this.header.version === 3;
      await this.eachCluster(offset, length, async (gc, inC, n) => {
        if (n < this.clusterSize || (!v3 && this.opts.backing)) {
          await this.writeInCluster(gc, inC, new Uint8Array(n));
          return;
        }
        await this.replaceWholeCluster(gc, v3 ? 0 : 0, v3 ? C.OFLAG_ZERO_LO : 0);
      });
    });
  }

  /**
   * Discard whole clusters in a range (partial clusters are left alone, as QEMU does): they read
   * as zeros afterwards (as the backing file's contents when there is a backing file and the image is v2).
   */
  discard(offset: number, length: number): Promise<void> {
    return this.run(`discard at 0x${offset.toString(16)}`, async () => {
      this.checkRange(offset, length);
      const zeroFlag = this.opts.backing && this.header.version === 3 ? C.OFLAG_ZERO_LO : 0;
      await this.eachCluster(offset, length, async (gc, _inC, n) => {
        if (n < this.clusterSize) return;
        await this.replaceWholeCluster(gc, 0, zeroFlag);
      });
    });
  }

  private async eachCluster(
    offset: number,
    length: number,
    fn: (gc: number, inC: number, n: number) => Promise<void>,
  ): Promise<void> {
    const cs = this.clusterSize;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const gc = Math.floor(pos / cs);
      const inC = pos - gc * cs;
      const n = Math.min(cs - inC, end - pos);
      await fn(gc, inC, n);
      pos += n;
    }
  }

  /** Replace a whole cluster's entry by a data-less one (hi, lo) and release what it held. */
  private async replaceWholeCluster(gc: number, hi: number, lo: number): Promise<void> {
    const cur = await this.lookup(gc);
    if (!cur && hi === 0 && lo === 0) return; // nothing mapped, nothing to drop
    if (cur && cur.hi === hi && cur.lo === lo) return;
    const l1i = Math.floor(gc / this.geo.l2Entries);
    const index = gc % this.geo.l2Entries;
    const l2off = await this.l2ForWrite(l1i);
    const l2 = await this.l2Cache.get(l2off);
    const oldHi = u32(l2, index * 8);
    const oldLo = u32(l2, index * 8 + 4);
    await this.setL2Entry(l2off, index, hi, lo);
    await this.releaseEntry(oldHi, oldLo);
  }

  /**
   * Write one whole guest cluster compressed (raw deflate). Falls back to a normal write when it
   * does not shrink or the image uses zstd. Compressed streams start on a sector boundary, packed
   * into partly used clusters (each use counts one reference on the host cluster, as in QEMU).
   */
  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    return this.run(`compressed write at 0x${offset.toString(16)}`, () => writeCompressedCluster(this, offset, data));
  }

  // ---- L1 growth and resize ----

  /**
   * Grow the virtual disk (shrinking is refused). Grows the L1 table first when needed, then
   * writes the new size (8 bytes at header offset 24) and makes it durable.
   */
  resize(newSize: number): Promise<void> {
    return this.run(`resize to ${newSize}`, () => growVirtualSize(this, newSize));
  }

  /**
   * Grow the active L1 table to `entries`: allocate, make the refcounts durable, write the new
   * table durably, switch the header (12 bytes at offset 36, one sector), then free the old table.
   */
  growL1(entries: number): Promise<void> {
    return growL1Table(this, entries);
  }

  // ---- flush, close, lazy refcounts ----

  /**
   * Guest flush: write back L2 tables (after their dependencies), then refcount blocks (unless
   * lazy), then one flush. Everything acknowledged before is durable afterwards, and clusters freed
   * before may be reused.
   */
  flush(): Promise<void> {
    return this.run('flush', () => this.flushNow());
  }

  private async flushNow(): Promise<void> {
    await this.l2Cache.writeBack();
    if (!this.lazy || !this.dirtyOnDisk) await this.refCache.writeBack();
    this.event('flush_to_disk');
    await this.io.flush();
    this.barriers++;
    this.stats.flushes++;
    this.alloc.releaseQuarantine();
  }

  /** Flush everything; with lazy refcounts also write the refcounts and clear the dirty bit. */
  close(): Promise<void> {
    return this.run(
      'close',
      async () => {
        if (this.opts.readOnly) return;
        await this.flushNow();
        if (this.dirtyOnDisk) {
          await this.refCache.writeBack();
          await this.barrier();
          await this.setDirtyBit(false);
        }
      },
      false,
    );
  }

  /** Under lazy refcounts, set the dirty bit (durably) before the first metadata change. */
  async markDirtyIfLazy(): Promise<void> {
    if (!this.lazy || this.dirtyOnDisk) return;
    await this.setDirtyBit(true);
  }

  private async setDirtyBit(on: boolean): Promise<void> {
    const f = on
      ? this.header.incompatibleFeatures | C.INCOMPAT_DIRTY
      : this.header.incompatibleFeatures & ~C.INCOMPAT_DIRTY;
    const b = new Uint8Array(8);
    putU64(b, 0, f);
    this.event('header_update');
    await this.io.write(C.HDR.incompatibleFeatures, b);
    // The bit must be durable before metadata relies on it (set) / after refcounts are (clear).
    await this.barrier();
    this.header.incompatibleFeatures = f;
    this.dirtyOnDisk = on;
  }

  /** Repair-on-open of a dirty image: recount every reference, rewrite the refcounts, clear the bit. */
  private async repairDirty(): Promise<void> {
    await rebuildRefcountsInPlace(this);
    this.refCache.clear();
    await this.barrier();
    await this.setDirtyBit(false);
  }

  /** Is the dirty bit currently set on disk? */
  get dirty(): boolean {
    return this.dirtyOnDisk;
  }

  /** Flush caches for operations that need memory and disk to agree first (snapshots). */
  async flushAllNow(): Promise<void> {
    await this.flushNow();
  }

  /** Expose reload for the snapshot module's error handling. */
  get options(): Readonly<WriterOptions> {
    return this.opts;
  }
}
