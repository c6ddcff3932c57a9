// The state one traversal carries from walker to walker.
import type { CancelToken } from '../../base/task-control.js';
import { BufferPool } from './batch-reads.js';
import type { TraversalOptions, TraversalSource } from './source.js';
import type { Layer, TraversalVisitor } from './types.js';

/** Default bytes of tables per batch read. */
const BATCH_BYTES = 8 << 20;

/** A further L1 reference to an L2 table already walked. */
export interface RepeatedL2 {
  offset: number;
  l1Index: number;
  layer: Layer;
}

export interface TraversalContext {
  src: TraversalSource;
  visitor: TraversalVisitor;
  opts: TraversalOptions;
  clusterSize: number;
  /** Tables per batch read. */
  tablesPerBatch: number;
  /** L2 tables walked so far (every layer). */
  seenL2: Set<number>;
  /** Further references to walked L2 tables, grouped by table in order of their first repeat. */
  repeats: Map<number, RepeatedL2[]>;
  /** Read arenas for the batches (a file: the first; other sources: one per batch in flight). */
  buffers: BufferPool[];
  /** What a table wholly past the end of the file reads as (never written). */
  zeros: Uint8Array;
  checkCancel(): void;
}

export function newContext(src: TraversalSource, visitor: TraversalVisitor, opts: TraversalOptions): TraversalContext {
  const cs = src.geo.clusterSize;
  const cancel: CancelToken | undefined = opts.cancel;
  const batchBytes = opts.batchBytes ?? BATCH_BYTES;
  return {
    src,
    visitor,
    opts,
    clusterSize: cs,
    tablesPerBatch: Math.max(1, Math.floor(batchBytes / cs)),
    seenL2: new Set(),
    repeats: new Map(),
    buffers: opts.buffers ?? [new BufferPool(batchBytes), new BufferPool(batchBytes)],
    zeros: new Uint8Array(cs),
    checkCancel: () => cancel?.throwIfCancelled(),
  };
}
