/**
 * Evidence before trust, for an L1 entry and an L2 entry that claim the same cluster: the L1 entry
 * says it is an L2 table, the L2 entry says it is guest data. When the cluster's content cannot be
 * any L2 table (an entry with reserved bits, unaligned or past the end; an empty table or one of
 * zero flags still could be one) and the L2 entry's own table validates as one mapping data, the L1
 * entry is the wrong claimant (an L1 table overwritten with another table's content points at that
 * table's data). Walking the cluster as a table would "fix" its entries by writing into the guest
 * data, so -r all sets the L1 entry aside before the walk, then clears it: its guest range, whose
 * real table the damage lost anyway, reads as unallocated and is named lost; the data cluster keeps
 * its bytes and its place. QEMU counts both claims and leaves the cluster shared.
 * A snapshot's L1 entry is judged the same way (a snapshot L1 overwritten by an active L2 table
 * names the active data as the snapshot's tables): it is cleared, the active data stays where it is.
 */
import { isZero, pointerTableSummary } from '../format/cluster-content.js';
import { readPadded } from '../io/positional-io.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { l2TableEvidence } from './evidence.js';
import { addLostRange, describeRange } from './guest-ranges.js';
import { at, type PlanContext } from './plan-context.js';
import type { RefWalk } from './references.js';

/** An L1 entry (active or a snapshot's) pointing at a guest data cluster as if it were an L2 table. */
export interface L1IntoData {
  /** Byte address of the L1 entry. */
  entry: number;
  /** Its index in its L1 table. */
  index: number;
  /** Whether the entry is in a snapshot's L1 table (its range is the snapshot's, not the disk's). */
  snapshot: boolean;
  /** The data cluster it names. */
  cluster: number;
  /** The guest offset the L2 entry maps that cluster at. */
  dataGuest: number;
}

/** The L1 entries that name a data cluster whose content is no L2 table (see the file's head). */
export async function findL1EntriesIntoData(img: Qcow2Image, walk: RefWalk): Promise<L1IntoData[]> {
  const cs = img.clusterSize;
  const out: L1IntoData[] = [];
  const ctx = {
    clusterSize: cs,
    fileSize: walk.fileSize,
    targetLimit: walk.fileSize,
    refcountOrder: img.geo.refcountOrder,
    extendedL2: img.geo.extendedL2,
  };
  const validates = new Map<number, boolean>();
  /** Whether the cluster validates as an L2 table mapping data (the data claim's own table must). */
  const isL2Table = async (c: number): Promise<boolean> => {
    let v = validates.get(c);
    if (v === undefined) {
      v = l2TableEvidence(await readPadded(img.io, c * cs, cs), c, img, walk.fileSize) > 0;
      validates.set(c, v);
    }
    return v;
  };
  /** Whether the cluster could be an L2 table at all: empty, or every entry plausible (zero flags only, too). */
  const couldBeL2Table = async (c: number): Promise<boolean> => {
    const buf = await readPadded(img.io, c * cs, cs);
    if (isZero(buf, 0, cs)) return true;
    const summary = pointerTableSummary(buf, 0, ctx, c * cs);
    return summary !== undefined && summary.beyondEof === 0;
  };
  for (const [c, list] of walk.multi) {
    if (walk.metadata.has(c)) continue;
    const l1s = list.filter((r) => r.kind === 'l1' || r.kind === 'snap-l1');
    const data = list.filter((r) => r.kind === 'l2' || r.kind === 'snap-l2');
    if (!l1s.length || !data.length || (await couldBeL2Table(c))) continue;
    // The data claim must come from a table that is itself a valid L2 table (not another misread).
    let owner: number | undefined;
    for (const r of data) {
      const table = Math.floor(r.entry / cs);
      if (table !== c && (await isL2Table(table))) {
        owner = r.guest;
        break;
      }
    }
    if (owner === undefined) continue;
    for (const r of l1s)
      out.push({
        entry: r.entry,
        index: Math.round(r.guest / img.geo.l1Coverage),
        snapshot: r.kind === 'snap-l1',
        cluster: c,
        dataGuest: owner,
      });
  }
  return out;
}

/** -r all: clear each set-aside L1 entry and name its guest range lost. */
export function noteL1EntriesIntoData(ctx: PlanContext, found: L1IntoData[]): void {
  const cs = ctx.clusterSize;
  for (const f of found) {
    if (f.snapshot) {
      noteSnapshotEntry(ctx, f);
      continue;
    }
    const start = f.index * ctx.geo.l1Coverage;
    addLostRange(ctx, start, ctx.geo.l1Coverage);
    const range = describeRange({ start, length: Math.min(ctx.geo.l1Coverage, Math.max(0, ctx.header.size - start)) });
    ctx.entryFix.set(f.entry, {
      hi: 0,
      lo: 0,
      why: `active L1 entry ${f.index}: pointed at guest data (cluster ${f.cluster}) as an L2 table; cleared`,
    });
    ctx.fixes.push({
      kind: 'l1-cleared',
      counts: 'corruption',
      differsFromQemu: true,
      text: `active L1 entry ${f.index} pointed at ${at(f.cluster * cs)} as its L2 table, but that cluster is guest data (an L2 table that validates maps it at guest ${at(f.dataGuest)}) and its content is not an L2 table; the entry was cleared, the data kept in place: guest range ${range} now reads as unallocated, and whatever it mapped is lost (the undo journal keeps the entry) — QEMU would leave the cluster shared`,
    });
    ctx.corruptionsFixed++;
  }
}

/** A snapshot's L1 entry onto active data: the snapshot loses that range (it lost its real table); the disk keeps it. */
function noteSnapshotEntry(ctx: PlanContext, f: L1IntoData): void {
  ctx.entryFix.set(f.entry, {
    hi: 0,
    lo: 0,
    why: `snapshot L1 entry ${f.index}: pointed at guest data (cluster ${f.cluster}) as an L2 table; cleared`,
  });
  ctx.fixes.push({
    kind: 'l1-cleared',
    counts: 'corruption',
    differsFromQemu: true,
    text: `the snapshot L1 entry at ${at(f.entry)} (index ${f.index}) pointed at ${at(f.cluster * ctx.clusterSize)} as its L2 table, but that cluster is the disk's guest data (an L2 table that validates maps it at guest ${at(f.dataGuest)}) and its content is not an L2 table; the snapshot entry was cleared and the data kept in place: that snapshot's range ${at(f.index * ctx.geo.l1Coverage)} now reads as unallocated in it (the undo journal keeps the entry) — QEMU would leave the cluster shared`,
  });
  ctx.corruptionsFixed++;
}
