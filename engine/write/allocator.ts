// Cluster allocation and refcount updates, with QEMU's ordering (qcow2.md §5.3–5.4):
// - new refcounts live in the refcount cache; callers make the referencing cache depend on it;
// - a new refcount block describes itself and is durable before the reftable entry points to it;
// - a grown refcount table is built with its own refcount blocks in fresh clusters, made durable,
//   and switched in with one 12-byte header write; the old table is freed afterwards;
// - a cluster whose refcount drops to 0 is not reused until the removal is durable (quarantine).
import * as C from '../format/constants.js';
import { putU32, putU64, u32 } from '../format/bytes.js';
import type { Geometry } from '../format/header.js';
import { getRefcount, maxRefcount, setRefcount } from '../format/refcount.js';
import type { TableCache, CacheHost } from './table-cache.js';
import { WriteError } from './write-error.js';

export interface AllocatorHost extends CacheHost {
  readonly geo: Geometry;
  readonly refCache: TableCache;
  readonly l2Cache: TableCache;
  /** Called when a cluster's refcount drops to 0 (so cached tables there are forgotten). */
  onClusterFreed(cluster: number): void;
  /** Refuse clusters about to be handed out that hold metadata (the image's refcounts are wrong). */
  guardFree(first: number, count: number): Promise<void>;
  /** Metadata moved or changed shape. */
  onStructureChanged(): void;
}

export class Allocator {
  /** Free-cluster search starts here. */
  private hint = 1;
  /** Clusters freed since the last guest flush: their removal may not be durable yet. */
  readonly quarantine = new Set<number>();
  /** One past the highest cluster handed out (clusters past EOF may not be written yet). */
  allocEnd: number;
  /** Allocations made so far (clusters), for statistics. */
  allocated = 0;

  constructor(
    private readonly host: AllocatorHost,
    /** In-memory refcount table (raw big-endian). */
    public reftable: Uint8Array,
    public reftableOffset: number,
    fileSize: number,
  ) {
    this.allocEnd = Math.ceil(fileSize / host.geo.clusterSize);
  }

  private get cs(): number {
    return this.host.geo.clusterSize;
  }

  private get rbEntries(): number {
    return this.host.geo.refcountBlockEntries;
  }

  get reftableEntries(): number {
    return this.reftable.length / C.REFTABLE_ENTRY_SIZE;
  }

  /** Offset of the refcount block for reftable index `i` (0 = none). */
  refblockOffset(i: number): number {
    if (i >= this.reftableEntries) return 0;
    const hi = u32(this.reftable, i * 8);
    const lo = u32(this.reftable, i * 8 + 4);
    return hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
  }

  async refcount(cluster: number): Promise<number> {
    const off = this.refblockOffset(Math.floor(cluster / this.rbEntries));
    if (off === 0) return 0;
    const block = await this.host.refCache.get(off);
    return getRefcount(block, cluster % this.rbEntries, this.host.geo.refcountOrder);
  }

  /** Change one cluster's refcount in the cache. Its refcount block must exist. */
  async change(cluster: number, delta: number): Promise<void> {
    const off = this.refblockOffset(Math.floor(cluster / this.rbEntries));
    if (off === 0) throw new WriteError('refcount update', `no refcount block covers cluster ${cluster}`);
    const block = await this.host.refCache.get(off);
    const i = cluster % this.rbEntries;
    const order = this.host.geo.refcountOrder;
    const v = getRefcount(block, i, order) + delta;
    if (v < 0) throw new WriteError('refcount update', `refcount of cluster ${cluster} would drop below 0`);
    if (v > maxRefcount(order))
      throw new WriteError(
        'refcount update',
        `refcount of cluster ${cluster} would overflow ${maxRefcount(order)} (refcount_bits=${2 ** order})`,
      );
    setRefcount(block, i, order, v);
    if (delta < 0) this.host.event('cluster_free');
    if (v === 0) {
      // Unordered (negative control): reuse at once, as a writer without this rule would.
      if (this.host.ordering !== 'unordered' && !this.quarantine.has(cluster)) {
        this.quarantine.add(cluster);
        this.quarantinedNow?.push(cluster);
      }
      this.host.onClusterFreed(cluster);
    }
    await this.host.refCache.markDirty(off);
  }

  /** Decrement `count` clusters from `first` (the references are already gone or going). */
  async free(first: number, count: number): Promise<void> {
    for (let c = first; c < first + count; c++) await this.change(c, -1);
  }

  /** Clusters quarantined during the current operation (null: no operation journaled). */
  private quarantinedNow: number[] | null = null;

  /** The allocation state before an operation (see op-undo.ts); quarantining is journaled from now on. */
  saveState(): { hint: number; allocEnd: number; allocated: number } {
    this.quarantinedNow = [];
    return { hint: this.hint, allocEnd: this.allocEnd, allocated: this.allocated };
  }

  /** Back to the state saved before a failed operation that changed nothing on disk but data. */
  restoreState(s: { hint: number; allocEnd: number; allocated: number }): void {
    for (const c of this.quarantinedNow ?? []) this.quarantine.delete(c);
    this.quarantinedNow = null;
    this.hint = s.hint;
    this.allocEnd = s.allocEnd;
    this.allocated = s.allocated;
  }

  /** The removals are durable now: quarantined clusters may be reused. */
  releaseQuarantine(): void {
    for (const c of this.quarantine) if (c < this.hint) this.hint = Math.max(1, c);
    this.quarantine.clear();
  }

  /**
   * Forget in-memory state after a reload from disk. The quarantine stays: a removal written but not
   * yet flushed is no more durable after a failure than before it.
   */
  reset(reftable: Uint8Array, reftableOffset: number, fileSize: number): void {
    this.reftable = reftable;
    this.reftableOffset = reftableOffset;
    this.hint = 1;
    this.allocEnd = Math.ceil(fileSize / this.cs);
  }

  /** First run of `n` free clusters at or after the hint (never cluster 0, never quarantined). */
  private async findFree(n: number): Promise<number> {
    let start = Math.max(1, this.hint);
    let run = 0;
    for (let c = start; ; c++) {
      const free = !this.quarantine.has(c) && (await this.refcount(c)) === 0;
      if (free) {
        if (run === 0) start = c;
        if (++run === n) return start;
      } else {
        run = 0;
      }
    }
  }

  /**
   * Allocate `n` contiguous clusters: refcounts raised in the refcount cache (not yet durable).
   * Returns the first cluster index. Callers make whatever references them depend on the
   * refcount cache (or flush it) before the reference can reach the disk.
   */
  async alloc(n: number): Promise<number> {
    for (let attempt = 0; attempt < 64; attempt++) {
      const start = await this.findFree(n);
      let missing = -1;
      for (let c = start; c < start + n; c++) {
        if (this.refblockOffset(Math.floor(c / this.rbEntries)) === 0) {
          missing = c;
          break;
        }
      }
      if (missing >= 0) {
        await this.allocRefblock(missing);
        continue; // the new block may sit where we looked (QEMU's -EAGAIN)
      }
      await this.host.guardFree(start, n);
      this.host.event('cluster_alloc');
      for (let c = start; c < start + n; c++) await this.change(c, +1);
      this.hint = start + n;
      this.allocEnd = Math.max(this.allocEnd, start + n);
      this.allocated += n;
      return start;
    }
    throw new WriteError('cluster allocation', `no free run of ${n} clusters after 64 attempts`);
  }

  /**
   * A refcount block for the (free) cluster `c`, placed at `c` itself so that it describes itself
   * (entry = 1): written and flushed before the reftable entry points to it.
   */
  private async allocRefblock(c: number): Promise<void> {
    const host = this.host;
    host.event('refblock_alloc');
    // Conservative barrier (as QEMU): pending L2 changes reach the disk before the refcount
    // structure changes shape.
    if (host.ordering === 'ordered') await host.l2Cache.flush();
    const rtIndex = Math.floor(c / this.rbEntries);
    if (rtIndex >= this.reftableEntries) {
      await this.growReftable(rtIndex);
      return;
    }
    await host.guardFree(c, 1);
    const off = c * this.cs;
    const block = new Uint8Array(this.cs);
    setRefcount(block, c % this.rbEntries, host.geo.refcountOrder, 1);
    host.event('refblock_alloc_write');
    await host.refCache.put(off, block);
    await host.refCache.flush();
    this.allocEnd = Math.max(this.allocEnd, c + 1);
    // Hook it up: one 8-byte reftable entry, made durable.
    const entry = new Uint8Array(8);
    putU64(entry, 0, off);
    host.event('refblock_alloc_hookup');
    await host.io.write(this.reftableOffset + rtIndex * 8, entry);
    await host.barrier();
    this.reftable.set(entry, rtIndex * 8);
    host.onStructureChanged();
  }

  /**
   * Grow the refcount table so that index `needed` exists. The new table and the refcount blocks
   * that describe it (and the block for `needed`) go into fresh clusters after everything in use;
   * all of it is durable before the header switch; the old table is freed after it.
   */
  private async growReftable(needed: number): Promise<void> {
    const host = this.host;
    const cs = this.cs;
    const E = this.rbEntries;
    host.event('reftable_grow');
    let start = this.allocEnd;
    let entries = Math.max(needed + 1, this.reftableEntries);
    let tableClusters = 0;
    let newBlocks: number[] = [];
    for (let iter = 0; ; iter++) {
      if (iter > 100) throw new WriteError('refcount table growth', 'layout did not converge');
      tableClusters = Math.ceil((Math.ceil(entries * 1.5) * 8) / cs);
      const cap = (tableClusters * cs) / 8;
      // Blocks needed: for `needed` and for every index covering the new area, where none exists.
      // More blocks make the area longer, which may need more blocks: iterate to a fixed point.
      let want = new Set<number>();
      for (let nb = 0; ; ) {
        want = new Set<number>([needed]);
        for (let c = start; c < start + nb + tableClusters; c++) want.add(Math.floor(c / E));
        newBlocks = [...want].filter((i) => this.refblockOffset(i) === 0).sort((x, y) => x - y);
        if (newBlocks.length === nb) break;
        nb = newBlocks.length;
      }
      const maxIndex = Math.max(...want);
      if (maxIndex >= cap) {
        entries = maxIndex + 1;
        continue;
      }
      // The area must be free where existing blocks describe it (e.g. leaks past EOF).
      let busy = -1;
      for (let c = start; c < start + newBlocks.length + tableClusters; c++) {
        if (this.quarantine.has(c) || (this.refblockOffset(Math.floor(c / E)) !== 0 && (await this.refcount(c)) !== 0))
          busy = c;
      }
      if (busy >= 0) {
        start = busy + 1;
        continue;
      }
      break;
    }
    if (tableClusters * cs > C.QCOW_MAX_REFTABLE_SIZE)
      throw new WriteError(
        'refcount table growth',
        `refcount table would exceed ${C.QCOW_MAX_REFTABLE_SIZE} bytes (File too large)`,
      );

    await host.guardFree(start, newBlocks.length + tableClusters);
    const order = host.geo.refcountOrder;
    const blockAt = new Map<number, number>(); // reftable index -> new block offset
    newBlocks.forEach((idx, k) => blockAt.set(idx, (start + k) * cs));
    const buffers = new Map<number, Uint8Array>();
    for (const idx of newBlocks) buffers.set(idx, new Uint8Array(cs));
    const areaEnd = start + newBlocks.length + tableClusters;
    for (let c = start; c < areaEnd; c++) {
      const idx = Math.floor(c / E);
      const b = buffers.get(idx);
      if (b) setRefcount(b, c % E, order, 1);
      else await this.change(c, +1); // an existing block describes this cluster
    }
    for (const [idx, b] of buffers) await host.refCache.put(blockAt.get(idx)!, b);
    host.event('refblock_alloc_write_blocks');
    await host.refCache.flush();

    const table = new Uint8Array(tableClusters * cs);
    table.set(this.reftable.subarray(0, Math.min(this.reftable.length, table.length)));
    for (const [idx, off] of blockAt) putU64(table, idx * 8, off);
    const tableOff = (start + newBlocks.length) * cs;
    host.event('refblock_alloc_write_table');
    await host.io.write(tableOff, table);
    await host.barrier();

    const sw = new Uint8Array(12);
    putU64(sw, 0, tableOff);
    putU32(sw, 8, tableClusters);
    host.event('refblock_alloc_switch_table');
    await host.io.write(C.HDR.refcountTableOffset, sw);
    await host.barrier();

    const oldOff = this.reftableOffset;
    const oldClusters = this.reftable.length / cs;
    this.reftable = table;
    this.reftableOffset = tableOff;
    this.allocEnd = Math.max(this.allocEnd, areaEnd);
    this.onReftableMoved?.(tableOff, tableClusters);
    host.onStructureChanged();
    // The header no longer points at the old table (durably): free it.
    if (oldClusters > 0 && oldOff !== 0) await this.free(oldOff / cs, oldClusters);
  }

  /** Told when the refcount table moved (the writer updates its header copy). */
  onReftableMoved?: (offset: number, clusters: number) => void;
}
