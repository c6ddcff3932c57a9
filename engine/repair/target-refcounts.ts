/**
 * Phase 7 of the plan: the refcount every cluster should end with. The reference counts of the image
 * as it will be, except that nothing protected is lowered (clusters kept as evidence, or everything
 * while a part is refused), nothing overflows the refcount width, and -r leaks only lowers.
 */
import { maxRefcount } from '../format/refcount.js';
import { CountsOverlay } from './cluster-counts.js';
import type { PlanContext } from './plan-context.js';
import type { RefWalk } from './references.js';

/** Checker anomaly kinds with no repair here (and none in QEMU). */
const UNREPAIRABLE_KINDS = new Set([
  'compressed-with-data-file',
  'compressed-with-bitmap',
  'subcluster-bitmap-corrupt',
  'unallocated-with-bitmap',
  'snapshots-with-data-file',
  'bitmap-invalid',
]);

export interface TargetRefcounts {
  /** Target refcount per host cluster. */
  target: CountsOverlay;
  /** The clusters whose target differs from their on-disk refcount, ascending. */
  changed: number[];
  /** Leaked clusters (in the original image) left allocated on purpose. */
  keptLeaks: number;
  /** Whether nothing may be freed or lowered (a part is refused). */
  protectAll: boolean;
}

/** The on-disk refcount of cluster c in the original image (0 past the walk's range). */
export const onDiskCount =
  (w: RefWalk) =>
  (c: number): number =>
    c < w.onDisk.length ? w.onDisk[c]! : 0;

export function targetRefcounts(ctx: PlanContext, final: RefWalk): TargetRefcounts {
  const w = ctx.walk;
  for (const a of ctx.opts.anomalies ?? []) {
    if (!UNREPAIRABLE_KINDS.has(a.kind) || ctx.refusals.some((r) => r.kind === a.kind)) continue;
    ctx.refusals.push({
      kind: a.kind,
      what: a.explanation,
      decide: 'no safe automatic repair exists (QEMU has none either); decide by hand',
    });
  }
  // Anything refused may still need clusters we cannot see: then nothing is freed or lowered at all.
  const protectAll = ctx.refusals.length > 0 || ctx.keepAllLeaks;
  const clusterCount = Math.max(final.refs.length, w.refs.length);
  const maxRc = maxRefcount(ctx.geo.refcountOrder);
  const { refs, onDisk } = w;
  const known = Math.min(clusterCount, onDisk.length);
  const fin = final.refs;
  // The on-disk counts, changed only at the clusters whose count moves.
  const target = new CountsOverlay(onDisk, clusterCount);
  let keptLeaks = 0;
  const changed: number[] = [];
  // One pass, cluster by cluster in the order the steps were once separate loops: protect, cap, -r leaks.
  const settle = (c: number): void => {
    const d = c < known ? onDisk[c]! : 0;
    let t = c < fin.length ? fin[c]! : 0;
    if (d === t) return;
    if (d > t && (protectAll || ctx.keep.has(c))) {
      t = d;
      if (d > 0 && (c < refs.length ? refs[c]! : 0) === 0) keptLeaks++;
    }
    if (t > maxRc) {
      ctx.refusals.push({
        kind: 'refcount-overflow',
        what: `cluster ${c} needs refcount ${t}, more than ${ctx.geo.refcountBits}-bit refcounts hold`,
        decide: 'widen the refcounts (qemu-img amend -o refcount_bits=16) and repair again',
      });
      t = d;
    }
    // -r leaks only lowers.
    if (!ctx.all && d < t) t = d;
    if (t === d) return;
    target.set(c, t);
    changed.push(c);
  };
  // Nothing re-pointed: the final references are the walk's, so only its mismatched clusters can move.
  if (final === w) {
    for (const c of w.mismatched) if (c < clusterCount) settle(c);
  } else for (let c = 0; c < clusterCount; c++) settle(c);
  // (Clusters kept as evidence without a refusal are named by the phase that kept them.)
  if (keptLeaks && protectAll)
    ctx.fixes.push({
      kind: 'leaks-kept',
      counts: 'none',
      differsFromQemu: true,
      text: `${keptLeaks} leaked cluster(s) kept and no refcount lowered, because an unresolved problem may still need them (QEMU would free them)`,
    });
  return { target, changed, keptLeaks, protectAll };
}
