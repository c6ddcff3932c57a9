// What the traversal reads: the file, its decoded header, and (when the caller has them already)
// the active L1 table and the refcount table.
import type { CancelToken } from '../../base/task-control.js';
import { INCOMPAT_DATA_FILE } from '../../format/constants.js';
import { geometry, type Geometry, type Qcow2Header } from '../../format/header.js';
import type { PositionalIO } from '../../io/positional-io.js';
import type { BufferPool } from './batch-reads.js';
import type { Qcow2Image } from '../qcow2-image.js';
import type { Layer } from './types.js';

export interface TraversalSource {
  io: PositionalIO;
  fileSize: number;
  header: Qcow2Header;
  geo: Geometry;
  /** Guest data lives in an external data file: L2 entries point there, not into this file. */
  externalData: boolean;
  /** The active L1 table's bytes, if already read (else read from the file). */
  l1?: Uint8Array;
  /** The refcount table's bytes, if already read (else read from the file). */
  reftable?: Uint8Array;
}

/** Snapshot layers chosen by the caller (e.g. read with the repair's rules) instead of the traversal's reader. */
export interface SnapshotLayers {
  layers: Layer[];
  /** Bytes the snapshot table occupies. */
  tableBytes: number;
}

export interface TraversalOptions {
  cancel?: CancelToken;
  snapshots?: SnapshotLayers;
  /**
   * 'once': each L2 table is walked once, however many L1 entries point to it. 'repeat': after all
   * layers, each further L1 reference walks it again (with `repeat` set), as QEMU counts references.
   */
  sharedL2?: 'once' | 'repeat';
  /** Read the refcount blocks too and hand them to `table`. */
  refcountBlocks?: boolean;
  /** Follow the bitmaps extension even when its autoclear bit is clear (the bitmaps are stale). */
  staleBitmaps?: boolean;
  /** Bytes of tables read per batch (bounds memory). */
  batchBytes?: number;
  /**
   * Walk as QEMU's check (calculate_refcounts) does. Its order: the header, the active layer, each
   * snapshot's layer, the snapshot table, the refcount table, the encryption header, the bitmaps,
   * then the refcount table's entries. Every non-empty L1 entry is followed where it points,
   * aligned or not (zeros past the end of the file), its reference and its table handed over
   * together, in L1 order: a table shared by N entries is walked N times, each in its place.
   * `sharedL2` does not apply.
   */
  asQemuCheck?: boolean;
  /** Walk the active layer only (its L1 and L2 tables): no header fields, refcounts, snapshots or bitmaps. */
  activeLayerOnly?: boolean;
  /**
   * Walk these layers only, in this order (their L1 and L2 tables): no active layer unless given, no
   * header fields, refcounts, snapshot table or bitmaps. Each L2 table is walked once over all of them.
   */
  layersOnly?: Layer[];
  /** Arenas the tables are read into (reused across the caller's own reads); else the traversal's own. */
  buffers?: BufferPool[];
  /** Give the event loop a turn every few milliseconds of synchronous reading (default true). */
  yieldTurns?: boolean;
}

export function sourceOf(img: Qcow2Image): TraversalSource {
  return {
    io: img.io,
    fileSize: img.fileSize,
    header: img.header,
    geo: img.geo,
    externalData: img.hasExternalData,
    l1: img.l1,
    reftable: img.reftable,
  };
}

/** A source from a header decoded by the caller (no open image: strip works from damaged headers). */
export function sourceFromHeader(io: PositionalIO, fileSize: number, header: Qcow2Header): TraversalSource {
  return {
    io,
    fileSize,
    header,
    geo: geometry(header),
    externalData: (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n,
  };
}
