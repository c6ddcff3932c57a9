/**
 * OFLAG_COPIED of the final active tree, from the final refcounts (QEMU's rule: set exactly when the
 * refcount is 1).
 */
import * as C from '../format/constants.js';
import { hex64, u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import type { CountsView } from './cluster-counts.js';
import type { EntryFix } from './plan-context.js';
import type { FixNote } from './plan.js';
import type { RefWalk } from './references.js';

export interface EntryWrite {
  entry: number;
  hi: number;
  lo: number;
  structure: 'l1-entry' | 'l2-entry';
  why: string;
}

/**
 * OFLAG_COPIED of the final active tree: set exactly when the final refcount is 1 (QEMU's rule).
 * Clearing happens first (always harmless), setting last (once the refcount is down to 1). Entries
 * the plan rewrites anyway get the right bit in that write when the refcount in force then allows it.
 */
export async function planCopied(
  img: Qcow2Image,
  w: RefWalk,
  final: CountsView,
  inForce: CountsView,
  entryFix: Map<number, EntryFix>,
  allowed: boolean,
  maySet: boolean,
): Promise<{
  clear: EntryWrite[];
  set: EntryWrite[];
  relinkValue: Map<number, EntryFix>;
  notes: FixNote[];
}> {
  const cs = img.clusterSize;
  const clear: EntryWrite[] = [];
  const set: EntryWrite[] = [];
  const notes: FixNote[] = [];
  const relinkValue = new Map<number, EntryFix>();
  const fc = (c: number): number => (c < final.length ? final.at(c)! : 0);
  const rc = (c: number): number => (c < inForce.length ? inForce.at(c)! : 0);
  const consider = (
    entry: number,
    hi: number,
    lo: number,
    c: number,
    structure: 'l1-entry' | 'l2-entry',
    label: string,
    forceOne: boolean,
  ): void => {
    const desired = forceOne || fc(c) === 1;
    const has = (hi & C.OFLAG_COPIED_HI) !== 0;
    const withBit = (on: boolean): number => (on ? hi | C.OFLAG_COPIED_HI : hi & ~C.OFLAG_COPIED_HI) >>> 0;
    const fix = entryFix.get(entry);
    if (fix) {
      const now = desired && (forceOne || rc(c) === 1);
      relinkValue.set(entry, { hi: withBit(now), lo, why: fix.why });
      if (desired && !now)
        set.push({ entry, hi: withBit(true), lo, structure, why: `${label}: set OFLAG_COPIED (refcount now 1)` });
      return;
    }
    if (!allowed || desired === has || (desired && !maySet)) return;
    const line =
      structure === 'l1-entry'
        ? `Repairing OFLAG_COPIED L2 cluster: l1_index=${(entry - img.header.l1TableOffset) / 8} l1_entry=${hex64(hi, lo)} refcount=${fc(c)}`
        : `Repairing OFLAG_COPIED data cluster: l2_entry=${hex64(hi, lo)} refcount=${fc(c)}`;
    notes.push({
      kind: 'oflag-copied',
      counts: 'corruption',
      qemuLine: line,
      text: `${label}: OFLAG_COPIED ${desired ? 'set' : 'cleared'} (refcount ${fc(c)})`,
    });
    (desired ? set : clear).push({
      entry,
      hi: withBit(desired),
      lo,
      structure,
      why: `${label}: ${desired ? 'set' : 'clear'} OFLAG_COPIED (final refcount ${fc(c)})`,
    });
  };
  for (const e of w.activeL1) {
    const t = await readPadded(img.io, e.entry, 8);
    consider(e.entry, u32(t, 0), u32(t, 4), e.l2 / cs, 'l1-entry', `active L1 entry ${e.index}`, false);
  }
  const ext = img.hasExternalData;
  const step = img.geo.l2EntrySize;
  for (const l2 of w.activeL2.keys()) {
    const t = await readPadded(img.io, l2, cs);
    for (let j = 0; j < img.geo.l2Entries; j++) {
      const hi = u32(t, j * step);
      const lo = u32(t, j * step + 4);
      const type = classifyL2(hi, lo, img.geo.extendedL2, ext);
      if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
      const off = l2Offset(hi, lo);
      if (!ext && (off % cs !== 0 || off >= w.fileSize)) continue;
      // Fast path: the bit is already right and the plan does not rewrite the entry.
      const c = off / cs;
      if (
        (ext || fc(c) === 1) === ((hi & C.OFLAG_COPIED_HI) !== 0) &&
        (entryFix.size === 0 || !entryFix.has(l2 + j * step))
      )
        continue;
      consider(l2 + j * step, hi, lo, c, 'l2-entry', `L2 table 0x${l2.toString(16)} entry ${j}`, ext);
    }
  }
  return { clear, set, relinkValue, notes };
}
