/**
 * Guest ranges the damage destroyed: what reads as zeros (or from the backing file) after the
 * repair where it did not before. Collected by the phases that drop or clear a mapping.
 */
import type { GuestRange } from './plan.js';
import type { PlanContext } from './plan-context.js';
import type { BadEntry } from './references.js';

/** Record [start, start+length) as lost, clipped to the disk. */
export function addLostRange(ctx: PlanContext, start: number, length: number): void {
  const end = Math.min(start + length, ctx.header.size);
  if (end > start) ctx.guestRangesLost.push({ start, length: end - start });
}

/** The guest offsets an active L2 table entry maps (one per active L1 entry pointing at its table). */
export function guestOffsetsOfL2Entry(ctx: PlanContext, b: BadEntry): number[] {
  if (!b.active) return [];
  return ctx.walk.activeL1
    .filter((e) => e.l2 === b.table)
    .map((e) => e.index * ctx.geo.l1Coverage + b.index * ctx.clusterSize);
}

/** Sorted, with overlapping and adjacent ranges merged. */
export function mergedRanges(ranges: GuestRange[]): GuestRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const out: GuestRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.start + last.length)
      last.length = Math.max(last.length, r.start + r.length - last.start);
    else out.push({ ...r });
  }
  return out;
}

/** "0x10000–0x1ffff (64 KiB)" for people. */
export function describeRange(r: GuestRange): string {
  const kib = r.length / 1024;
  const size = kib >= 1024 ? `${+(kib / 1024).toFixed(2)} MiB` : `${+kib.toFixed(2)} KiB`;
  return `0x${r.start.toString(16)}–0x${(r.start + r.length - 1).toString(16)} (${size})`;
}

/** Name each guest cluster at `starts` lost (sorted in place) and describe the first eight, with "…" past them. */
export function nameLostClusters(ctx: PlanContext, starts: number[]): string {
  const cs = ctx.clusterSize;
  starts.sort((a, b) => a - b);
  for (const g of starts) addLostRange(ctx, g, cs);
  const shown = starts.slice(0, 8).map((g) => describeRange({ start: g, length: Math.min(cs, ctx.header.size - g) }));
  return `${shown.join(', ')}${starts.length > 8 ? ', …' : ''}`;
}
