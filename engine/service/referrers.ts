// What the cluster inspector says about references to one host cluster: the exact count, the first
// referrers, and a summary by kind, from the image's one metadata traversal. The checker's per-cluster
// count is kept in a byte that saturates at 255 (and stops at the refcount width's maximum); below
// that it is exact and no walk is needed for the count. A saturated count is never shown: the
// traversal counts the cluster's references to the end (many compressed clusters share one host
// cluster: hundreds of references are ordinary there).
import type { CancelToken } from '../base/task-control.js';
import type { Referrer } from '../contract/findings.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { findClusterReferrers, sourceOf } from '../image/traversal/index.js';

/** Referrers listed by the inspector; the count and the summary by kind cover all of them. */
export const MAX_LISTED_REFERRERS = 50;
/** Bytes of tables a click may read (about 1000 L2 tables of 64 KiB). */
export const REFERRER_BUDGET = 64 * 1024 * 1024;
/** Where the checker's per-cluster byte saturates. */
const CHECKER_COUNT_CAP = 255;

/** The smallest count the checker may report for a cluster with more references than that. */
export function checkerCountCap(refcountBits: number): number {
  return Math.min(CHECKER_COUNT_CAP, 2 ** refcountBits - 1);
}

export interface ClusterReferences {
  /** Exact reference count; null when unknown (the bounded walk stopped and the checker's count saturated). */
  references: number | null;
  referrers: Referrer[];
  /** True when `referrers` lists every referrer. */
  referrersComplete: boolean;
  /** Every referrer found, listed or not (when the walk ran to its end). */
  referrerCount?: number;
  referrersByKind?: Array<{ kind: string; count: number }>;
}

export interface ClusterReferencesOptions {
  /** The checker's count for the cluster, if a check ran. */
  checked?: number;
  /** List the referrers (a click); without it, the walk runs only when the checker's count is not exact. */
  list: boolean;
  cancel?: CancelToken;
  /** Bytes of tables the listing may read; a count the checker does not know exactly is walked to the end. */
  budget?: number;
}

export async function clusterReferences(
  image: Qcow2Image,
  cluster: number,
  opts: ClusterReferencesOptions,
): Promise<ClusterReferences> {
  const cap = checkerCountCap(image.geo.refcountBits);
  const exact = opts.checked !== undefined && opts.checked < cap ? opts.checked : undefined;
  if (!opts.list && exact !== undefined) return { references: exact, referrers: [], referrersComplete: false };
  const { found, complete } = await findClusterReferrers(sourceOf(image), new Set([cluster]), {
    maxPerCluster: opts.list ? MAX_LISTED_REFERRERS : 0,
    // Only a listing is bounded; the count walks on (cancellable) when no exact one is known.
    budget: exact === undefined ? Number.POSITIVE_INFINITY : (opts.budget ?? REFERRER_BUDGET),
    ...(opts.cancel ? { cancel: opts.cancel } : {}),
  });
  const f = found.get(cluster)!;
  if (!complete) return { references: exact ?? null, referrers: f.referrers, referrersComplete: false };
  return {
    references: f.references,
    referrers: f.referrers,
    referrersComplete: opts.list && !f.truncated,
    referrerCount: f.references,
    referrersByKind: [...f.byKind].map(([kind, count]) => ({ kind, count })),
  };
}
