// A minimal sequential writer of a fresh, self-contained qcow2 v3 image (no backing file, no
// snapshots): guest clusters arrive in increasing order; each non-zero cluster is appended, each
// L2 table follows the data it maps, and the L1 table, the refcount structure and finally the
// header are written at the end. Every cluster has refcount 1, so `qemu-img check` finds nothing.
// The header goes last: an interrupted write never leaves something that opens as a valid image.
import * as C from '../format/constants.js';
import { putU32, putU64 } from '../format/bytes.js';
import { setRefcount } from '../format/refcount.js';
import type { PositionalIO } from '../io/positional-io.js';
import { WriteBehind } from './write-behind.js';
import { uninitialized } from './bulk-read.js';

const REFCOUNT_ORDER = 4;
const FLUSH_AT = 8 * 1024 * 1024;

export class Qcow2SequentialWriter {
  readonly cs: number;
  private readonly l2Entries: number;
  private readonly l1: number[];
  private l2: Uint8Array;
  private l2Index = -1;
  private l2Used = false;
  /** Next free host cluster index (cluster 0 is the header). */
  private next = 1;
  /** Appended clusters not yet written: `staged` bytes in a staging buffer, from cluster pendingStart. */
  private readonly staging: Uint8Array[] = [];
  private turn = 0;
  private staged = 0;
  private pendingStart = 1;
  private lastGuest = -1;
  dataClusters = 0;
  private readonly out: WriteBehind;

  constructor(
    private readonly io: PositionalIO,
    private readonly clusterBits: number,
    private readonly virtualSize: number,
  ) {
    this.out = new WriteBehind(io);
    this.cs = 2 ** clusterBits;
    this.l2Entries = this.cs / 8;
    this.l1 = new Array<number>(Math.max(1, Math.ceil(virtualSize / (this.cs * this.l2Entries)))).fill(0);
    this.l2 = new Uint8Array(this.cs);
  }

  /** One guest cluster; null (or never called) = unallocated, reads as zeros. `data` is copied. */
  async put(guestCluster: number, data: Uint8Array | null): Promise<void> {
    if (guestCluster <= this.lastGuest) throw new Error(`qcow2 output: guest cluster ${guestCluster} out of order`);
    this.lastGuest = guestCluster;
    if (!data) return;
    const i = Math.floor(guestCluster / this.l2Entries);
    if (i >= this.l1.length) throw new Error(`qcow2 output: guest cluster ${guestCluster} beyond the virtual size`);
    if (i !== this.l2Index) {
      await this.closeL2();
      this.l2Index = i;
    }
    const host = await this.append(data.length === this.cs ? data : pad(data, this.cs));
    putU64(this.l2, (guestCluster % this.l2Entries) * 8, BigInt(host) | (1n << 63n)); // COPIED: refcount 1
    this.l2Used = true;
    this.dataClusters++;
  }

  /** Write the L1 table, refcounts and header; returns the file size. */
  async finish(): Promise<number> {
    await this.closeL2();
    const cs = this.cs;
    const l1Clusters = Math.ceil((this.l1.length * 8) / cs);
    const l1Buf = new Uint8Array(l1Clusters * cs);
    this.l1.forEach((off, i) => {
      if (off) putU64(l1Buf, i * 8, BigInt(off) | (1n << 63n));
    });
    const l1Offset = await this.append(l1Buf);
    // Refcount table + blocks after everything, covering themselves too.
    const used = this.next;
    const perBlock = (cs * 8) >> REFCOUNT_ORDER;
    let blocks = 0,
      tableClusters = 0;
    for (;;) {
      const total = used + blocks + tableClusters;
      const b = Math.ceil(total / perBlock);
      const t = Math.ceil((b * 8) / cs);
      if (b === blocks && t === tableClusters) break;
      blocks = b;
      tableClusters = t;
    }
    const total = used + tableClusters + blocks;
    const table = new Uint8Array(tableClusters * cs);
    const tableOffset = this.next * cs;
    for (let k = 0; k < blocks; k++) putU64(table, k * 8, (this.next + tableClusters + k) * cs);
    await this.append(table);
    for (let k = 0; k < blocks; k++) {
      const blk = new Uint8Array(cs);
      for (let c = k * perBlock; c < Math.min(total, (k + 1) * perBlock); c++)
        setRefcount(blk, c - k * perBlock, REFCOUNT_ORDER, 1);
      await this.append(blk);
    }
    await this.flushPending();
    await this.out.drain();
    await this.io.flush();
    // Header last.
    const h = new Uint8Array(cs);
    putU32(h, C.HDR.magic, C.QCOW2_MAGIC);
    putU32(h, C.HDR.version, 3);
    putU32(h, C.HDR.clusterBits, this.clusterBits);
    putU64(h, C.HDR.size, this.virtualSize);
    putU32(h, C.HDR.l1Size, this.l1.length);
    putU64(h, C.HDR.l1TableOffset, l1Offset);
    putU64(h, C.HDR.refcountTableOffset, tableOffset);
    putU32(h, C.HDR.refcountTableClusters, tableClusters);
    putU32(h, C.HDR.refcountOrder, REFCOUNT_ORDER);
    putU32(h, C.HDR.headerLength, C.HEADER_V3_QEMU_LENGTH);
    // Extension area: an end marker (zeros) right after the header.
    await this.io.write(0, h);
    await this.io.flush();
    return total * cs;
  }

  /** Wait for writes in flight (before the output is closed or removed on an error). */
  async abandon(): Promise<void> {
    await this.out.drain().catch(() => undefined);
  }

  private async closeL2(): Promise<void> {
    if (this.l2Index < 0 || !this.l2Used) return;
    this.l1[this.l2Index] = await this.append(this.l2);
    this.l2 = new Uint8Array(this.cs);
    this.l2Used = false;
  }

  /** Reserve the next clusters for `data` (whole clusters) and queue a copy; returns its host offset. */
  private async append(data: Uint8Array): Promise<number> {
    const off = this.next * this.cs;
    if (this.staged + data.length > FLUSH_AT) await this.flushPending();
    this.next += data.length / this.cs;
    if (data.length > FLUSH_AT) {
      // A large table of the writer's own (never changed again): written as it is.
      await this.out.write(off, data);
      this.pendingStart = this.next;
      return off;
    }
    const k = this.turn % 2;
    this.staging[k] ??= uninitialized(FLUSH_AT);
    this.staging[k]!.set(data, this.staged);
    this.staged += data.length;
    return off;
  }

  private async flushPending(): Promise<void> {
    if (!this.staged) return;
    const buf = this.staging[this.turn++ % 2]!.subarray(0, this.staged);
    const at = this.pendingStart * this.cs;
    this.pendingStart += this.staged / this.cs;
    this.staged = 0;
    // Returns once the previous write is done: the other staging buffer is free again.
    await this.out.write(at, buf);
  }
}

function pad(d: Uint8Array, cs: number): Uint8Array {
  const out = new Uint8Array(cs);
  out.set(d);
  return out;
}
