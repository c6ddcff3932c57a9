// Our diagnostics QEMU does not make (counters unaffected): missing backing or data files, the
// header's dirty and corrupt bits, compressed clusters that do not decode, and the referrers of
// clusters in trouble named on their anomalies.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { decodes } from './compressed-sample.js';
import { findClusterReferrers, sourceOf } from '../image/traversal/index.js';
import type { CheckState } from './state.js';
import type { Referrer } from './types.js';

/** Clusters whose referrers are looked up for the anomalies. */
const MAX_EXPLAINED = 256;

export function extraHeaderFindings(state: CheckState): void {
  // QEMU refuses to check an image whose backing or data file is missing; we check the metadata
  // anyway and say so.
  const image = state.image;
  const h = image.header;
  const missing = (name: string | undefined): boolean => {
    if (!name || name.includes(':') || !image.io.name) return false;
    return !existsSync(resolve(dirname(image.io.name), name));
  };
  if (h.backingFile !== undefined && missing(h.backingFile))
    state.anomalies.add('backing-file-missing', { referrer: { kind: 'header' } });
  if (state.dataFile && missing(h.dataFileName))
    state.anomalies.add('data-file-missing', { referrer: { kind: 'header' } });
  if (image.isDirty) state.anomalies.add('dirty-bit');
  if (image.isCorrupt) state.anomalies.add('corrupt-bit');
}

/** Decode the sample of compressed clusters the walk kept. */
export async function checkCompressedSamples(state: CheckState): Promise<void> {
  for (const smp of state.compressedSamples) {
    if (!(await decodes(state.image, smp.offset, smp.size)))
      state.anomalies.add('compressed-undecodable', {
        cluster: Math.floor(smp.offset / state.clusterSize),
        referrer: { kind: 'l2', table: smp.l2Offset, index: smp.index, guestOffset: smp.guestOffset },
      });
  }
}

/**
 * Attach the referrers of clusters in trouble to their anomalies (bounded: the first clusters of
 * each run, at most MAX_EXPLAINED in all), with one more pass over the metadata.
 */
export async function nameReferrers(state: CheckState): Promise<void> {
  const kinds = new Set([
    'refcount-too-low',
    'refcount-zero-referenced',
    'leaked-cluster',
    'refblock-shared',
    'refcount-overflow',
    'metadata-overlap',
  ]);
  const targets = new Set<number>();
  const runs = state.anomalies.list.filter(
    (a) => kinds.has(a.kind) && a.firstCluster !== undefined && !(a.kind === 'leaked-cluster' && a.references === 0),
  );
  for (const a of runs) {
    for (let c = a.firstCluster!; c < a.firstCluster! + Math.min(a.count, 8) && targets.size < MAX_EXPLAINED; c++)
      targets.add(c);
  }
  if (targets.size === 0) return;
  state.checkCancel();
  const { found } = await findClusterReferrers(sourceOf(state.image), targets, { maxPerCluster: 16 });
  for (const a of runs) {
    const refs: Referrer[] = [];
    for (let c = a.firstCluster!; c < a.firstCluster! + a.count && refs.length < 32; c++)
      refs.push(...(found.get(c)?.referrers ?? []));
    if (refs.length) a.referrers = [...(a.referrers ?? []), ...refs].slice(0, 32);
  }
}
