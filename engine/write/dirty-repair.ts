// Repair-on-open of a dirty image (lazy refcounts, not closed cleanly): its refcounts may lag
// behind its references, so recount every reference and rewrite each refcount block that differs.
// The dirty bit stays set until this is durable, so a crash here just means doing it again.
import { Qcow2Image } from '../image/qcow2-image.js';
import { getRefcount, maxRefcount, setRefcount } from '../format/refcount.js';
import { readPadded } from '../io/positional-io.js';
import { countReferences } from './references.js';
import { WriteError } from './write-error.js';
import type { Geometry } from '../format/header.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { Allocator } from './allocator.js';

/** What the rebuild needs of the writer (a narrow view, so this file does not depend on it). */
export interface RefcountRebuildHost {
  readonly io: PositionalIO;
  readonly geo: Geometry;
  readonly clusterSize: number;
  readonly alloc: Pick<Allocator, 'reftableEntries' | 'refblockOffset'>;
  event(name: string): void;
}

/**
 * The refcount blocks whose recounted contents differ from the disk (offset -> new block). Throws
 * when the metadata is damaged, a count overflows, or a referenced cluster has no refcount block.
 */
export async function recountRefcountBlocks(w: RefcountRebuildHost): Promise<Map<number, Uint8Array>> {
  const img = await Qcow2Image.open(w.io, { checkMode: true });
  const walk = await countReferences(img);
  if (walk.problems.length > 0)
    throw new WriteError('recounting the refcounts', `metadata is damaged, run a check first: ${walk.problems[0]}`);
  const E = w.geo.refcountBlockEntries;
  const cs = w.clusterSize;
  const order = w.geo.refcountOrder;
  const max = maxRefcount(order);
  const covered = new Set<number>();
  const changed = new Map<number, Uint8Array>();
  for (let i = 0; i < w.alloc.reftableEntries; i++) {
    const off = w.alloc.refblockOffset(i);
    if (off === 0) continue;
    covered.add(i);
    const old = await readPadded(w.io, off, cs);
    const next = new Uint8Array(cs);
    for (let k = 0; k < E; k++) {
      const r = walk.refs.get(i * E + k) ?? 0;
      if (r > max)
        throw new WriteError(
          'recounting the refcounts',
          `cluster ${i * E + k} has ${r} references, more than refcount_bits allows`,
        );
      if (r) setRefcount(next, k, order, r);
    }
    let same = true;
    for (let k = 0; k < E && same; k++) if (getRefcount(old, k, order) !== getRefcount(next, k, order)) same = false;
    if (!same) changed.set(off, next);
  }
  for (const c of walk.refs.keys()) {
    if (!covered.has(Math.floor(c / E)))
      throw new WriteError('recounting the refcounts', `cluster ${c} is referenced but no refcount block covers it`);
  }
  return changed;
}

export async function rebuildRefcountsInPlace(w: RefcountRebuildHost): Promise<void> {
  let changed: Map<number, Uint8Array>;
  try {
    changed = await recountRefcountBlocks(w);
  } catch (e) {
    if (e instanceof WriteError) throw new WriteError('repairing the dirty image', e.reason, { cause: e });
    throw e;
  }
  for (const [off, block] of changed) {
    w.event('refblock_update_part');
    await w.io.write(off, block);
  }
}
