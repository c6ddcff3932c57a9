// The vocabulary of the metadata traversal: what a reference points at, who holds it, and what is
// wrong with it. One reference per pointer the image's metadata holds.
import type { ClusterType } from '../../format/l2-entry.js';

/** What a pointer leads to. */
export type TargetKind =
  | 'header'
  | 'l1'
  | 'l2'
  | 'data'
  | 'compressed'
  | 'refcount-table'
  | 'refcount-block'
  | 'snapshot-table'
  | 'snapshot-l1'
  | 'bitmap-directory'
  | 'bitmap-table'
  | 'bitmap-data'
  | 'crypto-header';

/** Which structure holds a pointer: the header (and its extensions) or a table. */
export type HolderKind =
  | 'header'
  | 'l1'
  | 'l2'
  | 'snapshot-l1'
  | 'snapshot-l2'
  | 'refcount-table'
  | 'snapshot-table'
  | 'bitmap-directory'
  | 'bitmap-table';

/** The referrer of a pointer: the table that holds it and where in it. */
export interface Holder {
  kind: HolderKind;
  /** Host offset of the holding table (absent for the header). */
  table?: number;
  /** Entry index inside that table (snapshot and bitmap entries: their ordinal). */
  index?: number;
  /** Guest offset an L1 or L2 entry covers, in the view of its layer. */
  guestOffset?: number;
  /** Set when the pointer is reached from a snapshot's L1 table. */
  snapshotId?: string;
}

/**
 * Why a pointer is not followed. `beyond-eof` is QEMU's rule: the range ends a cluster or more past
 * the end of the file (a table that merely runs past the end is read zero-padded).
 */
export type PointerProblem = 'unaligned' | 'beyond-eof' | 'too-large' | 'zero';

/** A pointer to a host range, with its referrer. Objects passed to a visitor are its to keep. */
export interface Reference {
  target: TargetKind;
  offset: number;
  /** Bytes the pointer claims (a table's size, a cluster, a compressed stream's sectors). */
  length: number;
  from: Holder;
  /** The entry's two 32-bit halves (0 for header fields). */
  hi: number;
  lo: number;
  /** Reserved bits set in the entry. */
  reserved: boolean;
  problem?: PointerProblem;
}

/** A layer of the image: the active L1 table or one snapshot's. */
export interface Layer {
  l1Offset: number;
  /** Entries of the L1 table. */
  l1Size: number;
  snapshotId?: string;
  /** Ordinal of the snapshot in the snapshot table. */
  snapshotIndex?: number;
  /** Byte offset of the snapshot's entry in the file. */
  entryOffset?: number;
}

/**
 * One L2 entry, decoded. The traversal reuses one object per table walk: read it inside the
 * callback, copy what must outlive it.
 */
export interface L2Entry {
  type: ClusterType;
  /** Host offset (standard: the cluster; compressed: the stream start; 0 when none). */
  offset: number;
  /** Bytes referenced: a cluster, or the compressed stream's sectors (QEMU's count). */
  length: number;
  hi: number;
  lo: number;
  /** Extended L2: the zero and allocation subcluster bitmaps (0 otherwise). */
  bitmapZero: number;
  bitmapAlloc: number;
  reserved: boolean;
  copied: boolean;
  /** Holder table, entry index and guest offset (in its layer's view). */
  table: number;
  index: number;
  guestOffset: number;
  layer: Layer;
  /** True when the table is walked again for a further L1 reference to it (QEMU counts it again). */
  repeat: boolean;
  problem?: PointerProblem;
}

/** A table as read from the file (zero-padded past its end), for consumers that scan words themselves. */
export interface TableRead {
  kind: 'l1' | 'l2' | 'refcount-table' | 'refcount-block' | 'bitmap-directory' | 'bitmap-table';
  offset: number;
  layer?: Layer;
  /**
   * L2 tables: the L1 index that led here; refcount blocks: the refcount table index; bitmap
   * tables: the bitmap's ordinal in the directory.
   */
  index?: number;
  repeat?: boolean;
}

/** A snapshot table entry that could not be followed as a layer, or the table itself when unreadable. */
export interface SnapshotTableProblem {
  /** Entry ordinal, or -1 for the table as a whole. */
  index: number;
  problem: 'unaligned' | 'beyond-eof' | 'too-many' | 'too-big';
  /** The offending value (offset or count). */
  value: number;
}

/**
 * What a consumer hears. Every callback is optional. A `false` returned from `reference` for a
 * pointer to a table means "do not read or follow it"; the traversal itself never follows a
 * pointer that is unaligned or starts past the end of the file.
 */
export interface TraversalVisitor {
  reference?(r: Reference): unknown;
  /** Raw bytes of each table read. `bytes` is only valid during the call. */
  table?(t: TableRead, bytes: Uint8Array): void;
  l2Entry?(e: L2Entry): void;
  /**
   * An L2 table as read (walks with `l2Entry`, outside QEMU-check order): return true when the
   * consumer took every entry from the bytes itself, and `l2Entry` is not called for them.
   */
  l2Table?(t: TableRead, bytes: Uint8Array): boolean;
  snapshotTableProblem?(p: SnapshotTableProblem): void;
  /** A batch of `tables` L2 tables or refcount blocks was handed over (for progress). */
  batchDone?(kind: 'l2' | 'refcount-block', tables: number): void;
  /**
   * After a bitmap table and the references it holds were handed over; awaited, so a consumer may
   * read what the table points at before the walk goes on.
   */
  bitmapTableEnd?(t: TableRead, bytes: Uint8Array): void | Promise<void>;
  /**
   * After an L2 table and its entries were handed over; awaited, so a consumer may look up what the
   * entries point at (their on-disk refcounts, say) before the walk goes on. `bytes` stays valid until then.
   */
  l2TableEnd?(t: TableRead, bytes: Uint8Array): void | Promise<void>;
}
