// Whether an unreferenced cluster is a stale refcount block of this image rather than data. Reading as
// a refcount block (small 16-bit words) is weak evidence on its own: guest data made of small repeated
// bytes (0x0202…, 0x0a0a…) reads exactly the same way, and calling it a refcount block lets a repair
// free guest data as "only wasted space". A block of this image must also be able to count this file:
//   - it counts no cluster past the end of the file (even read as the first block, whose entries
//     start at cluster 0, its last non-zero entry lies inside the file);
//   - no count exceeds what the image's users of one cluster can reach: every L2 entry of the active
//     disk and of each snapshot, times the compressed streams one cluster can hold.
// What fails either test is data (kept and reported), never freed in silence.
import { looksLikeRefcountBlock } from '../format/cluster-content.js';
import { getRefcount } from '../format/refcount.js';

export interface RefcountBlockContext {
  clusterSize: number;
  fileSize: number;
  extendedL2: boolean;
  refcountOrder: number;
  /** Internal snapshots in the image's snapshot table (each adds a user to every cluster it shares). */
  snapshots?: number;
}

/** The smallest compressed stream counted when bounding how many streams share one host cluster (bytes). */
const MIN_STREAM_BYTES = 16;

/** The largest refcount one cluster of this image can plausibly carry. */
export function maxPlausibleRefcount(ctx: RefcountBlockContext): number {
  const streams = Math.floor(ctx.clusterSize / MIN_STREAM_BYTES) + 1;
  return streams * ((ctx.snapshots ?? 0) + 1);
}

export function isStaleRefcountBlock(content: Uint8Array, ctx: RefcountBlockContext): boolean {
  const cs = ctx.clusterSize;
  if (!looksLikeRefcountBlock(content, 0, { ...ctx, targetLimit: ctx.fileSize })) return false;
  const order = ctx.refcountOrder;
  const entries = (cs * 8) >> order;
  const fileClusters = Math.ceil(ctx.fileSize / cs);
  const limit = maxPlausibleRefcount(ctx);
  for (let i = 0; i < entries; i++) {
    const v = getRefcount(content, i, order);
    if (v === 0) continue;
    if (i >= fileClusters || v > limit) return false;
  }
  return true;
}
