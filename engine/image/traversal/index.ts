// The one traversal of an image's metadata (see traverse.ts), and the pieces its consumers share.
export { traverse } from './traverse.js';
export { sourceFromHeader, sourceOf } from './source.js';
export type { SnapshotLayers, TraversalOptions, TraversalSource } from './source.js';
export { endsBeyondEof } from './pointer.js';
export { refblockReference } from './refcounts.js';
export { readTables } from './read-tables.js';
export { BufferPool } from './batch-reads.js';
export type {
  Holder,
  HolderKind,
  L2Entry,
  Layer,
  PointerProblem,
  Reference,
  SnapshotTableProblem,
  TableRead,
  TargetKind,
  TraversalVisitor,
} from './types.js';
export { findClusterReferrers, toReferrer } from './cluster-referrers.js';
export type { ClusterReferrers, ReferrerSearchOptions, ReferrerSearchResult } from './cluster-referrers.js';
