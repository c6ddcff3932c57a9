// Per-cluster refcounts held at the image's refcount width (one byte up to 8-bit refcounts, two for
// the default 16-bit, four for 32-bit, a double for 64-bit): a large image has tens of millions of
// clusters, and every fresh page of such an array costs a page fault when first touched.
export type ClusterCounts = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** A zeroed array of `n` refcounts wide enough for refcount order `order`. */
export function countsArray(order: number, n: number): ClusterCounts {
  return order <= 3
    ? new Uint8Array(n)
    : order === 4
      ? new Uint16Array(n)
      : order === 5
        ? new Uint32Array(n)
        : new Float64Array(n);
}

/** Read access to per-cluster counts: a typed array, or an overlay of one. */
export interface CountsView {
  readonly length: number;
  /** The count of cluster c (undefined past the end, as for arrays). */
  at(c: number): number | undefined;
}

/**
 * Counts equal to a base array except at the few clusters set here: a plan's target refcounts
 * differ from the on-disk ones at a handful of clusters, and a copy of the whole array would cost
 * a page fault per 4 KiB.
 */
export class CountsOverlay implements CountsView {
  private readonly changes = new Map<number, number>();

  constructor(
    private readonly base: ClusterCounts,
    readonly length: number,
  ) {}

  at(c: number): number | undefined {
    if (c < 0 || c >= this.length) return undefined;
    const v = this.changes.get(c);
    return v !== undefined ? v : c < this.base.length ? this.base[c]! : 0;
  }

  set(c: number, v: number): void {
    if (c >= 0 && c < this.length) this.changes.set(c, v);
  }

  /** An independent copy (the base is shared: it is never written). */
  copy(): CountsOverlay {
    const out = new CountsOverlay(this.base, this.length);
    for (const [c, v] of this.changes) out.changes.set(c, v);
    return out;
  }
}
