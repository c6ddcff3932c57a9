// The checker's in-memory reference table (QEMU's IMRT): one byte of reference count per host
// cluster, touched as little as possible. Touching fresh memory costs a page fault per 4 KiB, and
// on a virtual machine that costs as much as walking the tables, so each 4 KiB page of the array
// keeps two ranges of cluster numbers:
// - its hull, [lo, hi): everything counted in the page lies inside, so clusters outside are known
//   to be zero without reading them;
// - its run, [runLo, runHi): clusters counted exactly once, mostly never written: a byte there is
//   0 or 1 and means 1. A preallocated image is little else than such runs, one after the other.
// Counts are written out ("materialized") only where a run would be counted again or read as bytes.
import { allZero } from './words.js';

/** Bytes (clusters) per memory page, and its log2. */
export const IMRT_PAGE = 4096;
const PAGE_BITS = 12;
/** A run that starts this close after a page's run, across clusters counted once, absorbs them. */
const MAX_ABSORB = 64;

export class Imrt {
  /** The counts; inside a page's run a 0 means 1 (see `get`). */
  readonly bytes: Uint8Array;
  /** Per page: hull lo, hull hi, run lo, run hi (hi 0: empty). */
  private readonly pages: Uint32Array;

  constructor(entries: number) {
    this.bytes = new Uint8Array(entries);
    this.pages = new Uint32Array(4 * ((entries >>> PAGE_BITS) + 1));
  }

  /** The count of cluster k (0..255; the analyzer keeps wider counts beside it). */
  get(k: number): number {
    const v = this.bytes[k] ?? 0;
    if (v !== 0) return v;
    const p = 4 * (k >>> PAGE_BITS);
    return k >= this.pages[p + 2]! && k < this.pages[p + 3]! ? 1 : 0;
  }

  /** Whether nothing was ever counted in the page holding cluster k. */
  untouched(k: number): boolean {
    return this.pages[4 * (k >>> PAGE_BITS) + 1] === 0;
  }

  /** Whether every cluster of [from, to) (inside one page) lies in its page's run: each counted once. */
  runCovers(from: number, to: number): boolean {
    const p = 4 * (from >>> PAGE_BITS);
    return to > from && this.pages[p + 2]! <= from && this.pages[p + 3]! >= to;
  }

  /**
   * If no cluster of [from, to) has been counted yet, count each once and return true; otherwise
   * change nothing and return false. Only a stretch inside a page's hull and outside its run is read.
   */
  countFresh(from: number, to: number): boolean {
    const pages = this.pages;
    const first = from >>> PAGE_BITS;
    const last = (to - 1) >>> PAGE_BITS;
    for (let pg = first; pg <= last; pg++) {
      const p = 4 * pg;
      const a = Math.max(from, pages[p]!);
      const b = Math.min(to, pages[p + 1]!);
      if (a >= b) continue; // outside the hull: zero
      if (Math.max(a, pages[p + 2]!) < Math.min(b, pages[p + 3]!)) return false; // meets the run: counted
      if (!allZero(this.bytes, a, b)) return false;
    }
    for (let pg = first; pg <= last; pg++)
      this.addOnes(Math.max(from, pg * IMRT_PAGE), Math.min(to, (pg + 1) * IMRT_PAGE));
    return true;
  }

  /** Count [a, b) (inside one page, none counted before) once: into the page's run when it can. */
  private addOnes(a: number, b: number): void {
    const pages = this.pages;
    const p = 4 * (a >>> PAGE_BITS);
    const runLo = pages[p + 2]!;
    const runHi = pages[p + 3]!;
    if (runHi === 0) {
      pages[p + 2] = a;
      pages[p + 3] = b;
    } else if (a >= runHi && a - runHi <= MAX_ABSORB && this.onesAt(runHi, a)) {
      // Continues the run past a few clusters counted once (an L2 table before its data), which
      // join it as they are.
      pages[p + 3] = b;
    } else if (b <= runLo && runLo - b <= MAX_ABSORB && this.onesAt(b, runLo)) {
      pages[p + 2] = a;
    } else {
      this.bytes.fill(1, a, b);
    }
    this.widenHull(p, a, b);
  }

  /** Whether the bytes of [a, b) are all 1. */
  private onesAt(a: number, b: number): boolean {
    for (let k = a; k < b; k++) if (this.bytes[k] !== 1) return false;
    return true;
  }

  private widenHull(p: number, a: number, b: number): void {
    const pages = this.pages;
    if (pages[p + 1] === 0) {
      pages[p] = a;
      pages[p + 1] = b;
    } else {
      if (a < pages[p]!) pages[p] = a;
      if (b > pages[p + 1]!) pages[p + 1] = b;
    }
  }

  /** Cluster k's count is about to be set to v (any value but a first 1: see `increment`). */
  set(k: number, v: number): void {
    const p = 4 * (k >>> PAGE_BITS);
    if (k >= this.pages[p + 2]! && k < this.pages[p + 3]!) this.materializePage(k >>> PAGE_BITS);
    this.widenHull(p, k, k + 1);
    this.bytes[k] = v;
  }

  /** One more reference to cluster k, whose count is `v` (from `get`). */
  increment(k: number, v: number): void {
    if (v === 0) this.addOnes(k, k + 1);
    else this.set(k, v + 1);
  }

  /** Clusters [from, to) are about to be read or written as bytes: runs written out, hulls widened. */
  prepareBytes(from: number, to: number, widen: boolean): void {
    if (to <= from) return;
    for (let pg = from >>> PAGE_BITS, last = (to - 1) >>> PAGE_BITS; pg <= last; pg++) {
      this.materializePage(pg);
      if (widen) this.widenHull(4 * pg, Math.max(from, pg * IMRT_PAGE), Math.min(to, (pg + 1) * IMRT_PAGE));
    }
  }

  /** The first cluster of [from, to) counted zero times, or `to` (runs and untouched pages skipped whole). */
  nextUncounted(from: number, to: number): number {
    const pages = this.pages;
    const bytes = this.bytes;
    let k = from;
    while (k < to) {
      const p = 4 * (k >>> PAGE_BITS);
      const pageEnd = Math.min(to, ((k >>> PAGE_BITS) + 1) * IMRT_PAGE);
      const hullHi = pages[p + 1]!;
      if (hullHi === 0 || k < pages[p]!) return k; // outside the hull: zero
      const runLo = pages[p + 2]!;
      const runHi = pages[p + 3]!;
      for (; k < pageEnd; k++) {
        if (k >= runLo && k < runHi) k = runHi - 1;
        else if (k >= hullHi || bytes[k] === 0) return k;
      }
    }
    return to;
  }

  /** Every count written out as bytes. */
  dense(): Uint8Array {
    this.prepareBytes(0, this.bytes.length, false);
    return this.bytes;
  }

  private materializePage(pg: number): void {
    const p = 4 * pg;
    const hi = this.pages[p + 3]!;
    if (hi === 0) return;
    this.bytes.fill(1, this.pages[p + 2]!, hi);
    this.pages[p + 2] = 0;
    this.pages[p + 3] = 0;
  }
}
