// The referrers of the clusters a check found in trouble, for its findings: the image's one
// traversal, asked about just those clusters.
import type { Qcow2Image } from '../image/qcow2-image.js';
import { findClusterReferrers, sourceOf } from '../image/traversal/index.js';
import type { ClusterReferrers } from '../image/traversal/index.js';

export type { ClusterReferrers } from '../image/traversal/index.js';

/** Who references each cluster of `clusters` (at most `maxPerCluster` referrers listed each). */
export async function findReferrers(
  image: Qcow2Image,
  clusters: ReadonlySet<number>,
  maxPerCluster = 1000,
): Promise<Map<number, ClusterReferrers>> {
  return (await findClusterReferrers(sourceOf(image), clusters, { maxPerCluster })).found;
}
