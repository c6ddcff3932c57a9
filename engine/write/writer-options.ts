// What a Qcow2Writer is opened with, and the counters it keeps.
import type { WriteOrdering } from './table-cache.js';

/** Guest contents of a backing image (read-only), for unallocated clusters and copy-on-write. */
export interface BackingGuest {
  readonly virtualSize: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface WriterOptions {
  ordering?: WriteOrdering;
  /** Only read guest data; every write method refuses. */
  readOnly?: boolean;
  /** The backing image's guest contents (when the image has a backing file). */
  backing?: BackingGuest;
  /** Tables kept per cache (L2 tables, refcount blocks). Default 256. */
  cacheTables?: number;
  /**
   * Lazy refcounts: refcount updates stay in memory until close, the dirty bit marks the image
   * meanwhile. Default: on when the image has the lazy-refcounts compatible bit.
   */
  lazyRefcounts?: boolean;
}

/** Counters of what the writer did (the lab and the bench read them). */
export interface WriterStats {
  /** Flushes issued (ordering barriers plus guest flushes). */
  flushes: number;
  /** Guest writes that needed a new cluster. */
  allocatingWrites: number;
  guestWrites: number;
}
