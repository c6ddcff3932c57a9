// The state one traversal carries from walker to walker.
import type { CancelToken } from '../../base/task-control.js';
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
  checkCancel(): void;
}

export function newContext(src: TraversalSource, visitor: TraversalVisitor, opts: TraversalOptions): TraversalContext {
  const cs = src.geo.clusterSize;
  const cancel: CancelToken | undefined = opts.cancel;
  return {
    src,
    visitor,
    opts,
    clusterSize: cs,
    tablesPerBatch: Math.max(1, Math.floor((opts.batchBytes ?? BATCH_BYTES) / cs)),
    seenL2: new Set(),
    repeats: new Map(),
    checkCancel: () => cancel?.throwIfCancelled(),
  };
}
