// The repair walk's tallies: references per host cluster (QEMU's counting with its end-of-file
// guard), the metadata map, the referrers of shared clusters and the invalid pointers found.
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { BadEntry, Ref, RefWalk } from './references.js';

/** Clusters past the end of file whose on-disk refcount is read, so allocations there can be checked. */
export const ALLOC_MARGIN = 64;

/**
 * References per host cluster: one byte each while every count fits (a clean image has few above
 * 2), widened to two and then four bytes the first time one does not.
 */
export type RefCounts = Uint8Array | Uint16Array | Uint32Array;

export class RefCounter {
  readonly cs: number;
  readonly fileSize: number;
  /** ceil(fileSize / clusterSize). */
  readonly hostClusters: number;
  refs: RefCounts;
  /** The largest count `refs` holds before it must be widened. */
  limit = 0xff;
  readonly metadata = new Map<number, string>();
  readonly multi = new Map<number, Ref[]>();
  readonly first = new Map<number, Ref>();
  readonly bad: BadEntry[] = [];
  readonly oldRefcountClusters = new Set<number>();
  readonly activeL1: RefWalk['activeL1'] = [];
  readonly activeL2 = new Map<number, number[]>();
  readonly allL2 = new Set<number>();
  /** Snapshot ordinal → byte address of its snapshot table entry. */
  readonly layerEntry = new Map<number, number>();
  /** 1 counts and flags; 2 only records referrers of the clusters marked shared. */
  pass: 1 | 2 = 1;
  /** Pass 2: clusters referenced more than once (metadata excluded). */
  shared: Uint8Array = new Uint8Array(0);

  /** Metadata clusters below hostClusters as bits (the map stays the record; this is the fast test). */
  private readonly metaBits: Uint8Array;
  /** Room behind `refs`: it grows over the margin the on-disk refcounts add without a copy. */
  private store: RefCounts;

  constructor(img: Qcow2Image) {
    this.cs = img.clusterSize;
    this.fileSize = img.fileSize;
    this.hostClusters = Math.ceil(this.fileSize / this.cs);
    const E = img.geo.refcountBlockEntries;
    const n = Math.max(this.hostClusters, 1);
    this.store = new Uint8Array(n + Math.max(ALLOC_MARGIN, Math.min(E, 1 << 20)));
    this.refs = this.store.subarray(0, n);
    this.metaBits = new Uint8Array((this.hostClusters + 7) >>> 3);
  }

  growTo(n: number): void {
    if (n <= this.refs.length) return;
    // Past refs.length the store is still zero: nothing is ever written beyond the view.
    if (n <= this.store.length) {
      this.refs = this.store.subarray(0, n);
      return;
    }
    const next = new (this.store.constructor as new (n: number) => RefCounts)(n);
    next.set(this.refs);
    this.store = next;
    this.refs = next;
  }

  /** One more reference to cluster c. */
  add(c: number): void {
    const v = this.refs[c]! + 1;
    if (v > this.limit) this.widen();
    this.refs[c] = v;
  }

  /** Move the counts to the next wider array (a count is about to outgrow this one). */
  widen(): void {
    const n = this.refs.length;
    const wider =
      this.store instanceof Uint8Array ? new Uint16Array(this.store.length) : new Uint32Array(this.store.length);
    wider.set(this.store);
    this.store = wider;
    this.refs = wider.subarray(0, n);
    this.limit = wider instanceof Uint16Array ? 0xffff : 0xffffffff;
  }

  /** Whether cluster c holds metadata (see markMeta). */
  isMeta(c: number): boolean {
    return c < this.hostClusters ? (this.metaBits[c >>> 3]! & (1 << (c & 7))) !== 0 : this.metadata.has(c);
  }

  /** Count [off, off+len) as QEMU does, with its EOF guard. Returns false when refused (≥1 cluster past EOF). */
  count(off: number, len: number): boolean {
    if (len <= 0) return true;
    if (off + len - this.fileSize >= this.cs) return false;
    if (this.pass === 2) return true;
    const a = Math.floor(off / this.cs);
    const b = Math.floor((off + len - 1) / this.cs);
    if (b >= this.refs.length) this.growTo(Math.max(b + 1, this.refs.length * 2));
    for (let c = a; c <= b; c++) this.add(c);
    return true;
  }

  flag(b: BadEntry): void {
    if (this.pass === 1) this.bad.push(b);
  }

  /** Flag a pointer that is not followed. */
  refuse(b: BadEntry): false {
    this.flag(b);
    return false;
  }

  track(c: number, r: Ref): void {
    const f = this.first.get(c);
    if (!f) {
      this.first.set(c, r);
      return;
    }
    let m = this.multi.get(c);
    if (!m) this.multi.set(c, (m = [f]));
    m.push(r);
  }

  /** Whether a data reference to cluster `c` is worth remembering in this pass. */
  wanted(c: number): boolean {
    return this.pass === 1 ? this.isMeta(c) : this.shared[c] === 1;
  }

  markMeta(off: number, len: number, what: string): void {
    if (len <= 0) return;
    for (let c = Math.floor(off / this.cs); c <= Math.floor((off + len - 1) / this.cs); c++)
      if (!this.metadata.has(c)) {
        this.metadata.set(c, what);
        if (c < this.hostClusters) this.metaBits[c >>> 3] = this.metaBits[c >>> 3]! | (1 << (c & 7));
      }
  }

  /** After pass 1: mark clusters referenced more than once; true when there is any (pass 2 needed). */
  markShared(): boolean {
    const n = this.refs.length;
    this.shared = new Uint8Array(n);
    let any = false;
    for (let c = 0; c < n; c++)
      if (this.refs[c]! > 1 && !this.isMeta(c)) {
        this.shared[c] = 1;
        any = true;
      }
    return any;
  }
}
