// The lost L1 slots of a view by index. A truncated L1 at QEMU's size limit loses millions of slots,
// and callers ask slot by slot: a scan of the list per question would be quadratic.
import type { LostL2 } from './types.js';

interface Index {
  length: number;
  byIndex: Map<number, LostL2>;
  /** Indices of which some record names where the entry pointed. */
  withHost: Set<number>;
}
const cache = new WeakMap<LostL2[], Index>();

function indexOf(list: LostL2[]): Index {
  const c = cache.get(list);
  if (c && c.length === list.length) return c;
  const ix: Index = { length: list.length, byIndex: new Map(), withHost: new Set() };
  for (const l of list) {
    if (!ix.byIndex.has(l.l1Index)) ix.byIndex.set(l.l1Index, l);
    if (l.host !== 0) ix.withHost.add(l.l1Index);
  }
  cache.set(list, ix);
  return ix;
}

/** The first lost record of each L1 index in `list` (rebuilt when the list has grown). */
export function lostByIndex(list: LostL2[]): Map<number, LostL2> {
  return indexOf(list).byIndex;
}

/** The L1 indices of `list` with a record that names where the entry pointed. */
export function lostWithHost(list: LostL2[]): Set<number> {
  return indexOf(list).withHost;
}

/** Append `items` to `list` one by one (a spread of millions overflows the call stack). */
export function appendLost(list: LostL2[], items: Iterable<LostL2>): void {
  for (const l of items) list.push(l);
}
