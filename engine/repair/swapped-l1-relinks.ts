/**
 * An active L1 entry that points at a snapshot's own L2 table instead of the active tree's (a
 * redirected entry, or the active L1 overwritten with a snapshot's L1): the table it points at is
 * referenced once more than its refcount allows, while a snapshot L1 holds another table at the same
 * slot whose refcount counts one more user than its references — the active tree's share, which the
 * damaged entry lost. When exactly one table at that slot carries such a share, the entry is
 * re-linked to it and every byte of the span is kept. When no snapshot holds the share, the active
 * tree's own table is a lost one (leaked, still an L2 table): the one lost table that maps some of the
 * snapshot table's data clusters at the same entries (a copy-on-write descendant) is re-linked there,
 * but only when the entries it maps differently carry COPIED; when none do, it is an older snapshot's
 * frozen table (that snapshot's L1 is the damaged one) and the active entry is left alone.
 * Otherwise the span reads a snapshot's data and is named lost.
 *
 * Which side was damaged is decided by the tables, not by which pointer the walk met first: taking a
 * snapshot clears COPIED on every entry of the tables it shares, so a snapshot's own table carries
 * none, while the active tree's copy-on-write table has COPIED on what it wrote since. When the table
 * the active entry points at carries COPIED entries, it is the active tree's own, the snapshot's
 * entry is the damaged one, and the active entry is left alone.
 */
import { addLostRange, describeRange } from './guest-ranges.js';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { readPadded } from '../io/positional-io.js';
import { findLostL2Tables, type LostL2Table, snapshotL1s } from './lost-l2-tables.js';
import { at, type PlanContext } from './plan-context.js';

export async function planSwappedL1Relinks(ctx: PlanContext): Promise<void> {
  const w = ctx.walk;
  if (!ctx.all || !w.snapshots.length) return;
  const cs = ctx.clusterSize;
  const count = (off: number): { refs: number; onDisk: number } | undefined => {
    const c = off / cs;
    return w.onDiskUnknown[c] ? undefined : { refs: w.refs[c] ?? 0, onDisk: w.onDisk[c] ?? 0 };
  };
  const over = w.activeL1.filter((e) => {
    const n = count(e.l2);
    return n !== undefined && n.refs > n.onDisk && !ctx.entryFix.has(e.entry);
  });
  if (!over.length) return;
  // Slot → the snapshot tables held there.
  const { bySlot: atSlot } = await snapshotL1s(ctx.img, w);
  let lost: LostL2Table[] | undefined;
  for (const e of over) {
    // Only a snapshot's table at this very slot: the active entry holds a snapshot's version of the span.
    const here = atSlot.get(e.index) ?? [];
    if (!here.includes(e.l2)) continue;
    if (await hasCopiedEntries(ctx, e.l2)) continue;
    const shares: number[] = [];
    for (const off of here) {
      if (off === e.l2 || w.activeL2.has(off) || !w.allL2.has(off)) continue;
      const n = count(off);
      if (n !== undefined && n.onDisk > n.refs) shares.push(off);
    }
    const span = ctx.geo.l1Coverage;
    const start = e.index * span;
    if (!shares.length) lost ??= await findLostL2Tables(ctx.img, w);
    const descendant = shares.length ? undefined : await lostDescendant(ctx, e.l2, lost!);
    if (descendant !== undefined) {
      const own = await writtenSince(ctx, e.l2, descendant);
      // The lost table is a snapshot's frozen ancestor: the active entry is right, a snapshot's is damaged.
      if (own === 'snapshot') continue;
      if (own === 'active') {
        relinkLost(ctx, e, descendant);
        continue;
      }
    }
    if (shares.length === 1) {
      const to = shares[0]!;
      // Shared with the snapshot from now on: no COPIED flag (the final counts set it if right).
      ctx.entryFix.set(e.entry, {
        hi: Math.floor(to / 0x1_0000_0000) >>> 0,
        lo: to >>> 0,
        why: `active L1 table entry ${e.index}: re-link the L2 table at ${at(to)} the active tree shares with a snapshot`,
      });
      ctx.fixes.push({
        kind: 're-link-swapped-l2',
        counts: 'corruption',
        differsFromQemu: true,
        text: `active L1 table entry ${e.index} pointed at a snapshot's L2 table at ${at(e.l2)} (refcount ${count(e.l2)!.onDisk}, ${count(e.l2)!.refs} references), while the snapshot L2 table at ${at(to)} at the same slot counts one user more than its references: the active tree's share; re-linked there, every byte of the span is kept — QEMU would raise the first table's refcount and leave the active disk reading the snapshot's data`,
      });
      ctx.corruptionsFixed++;
      continue;
    }
    if (start >= ctx.header.size) continue;
    const range = { start, length: Math.min(span, ctx.header.size - start) };
    addLostRange(ctx, range.start, range.length);
    ctx.fixes.push({
      kind: 'swapped-l2-span-lost',
      counts: 'none',
      explain: true,
      text: `active L1 table entry ${e.index} points at a snapshot's L2 table at ${at(e.l2)} (refcount ${count(e.l2)!.onDisk}, ${count(e.l2)!.refs} references): guest ${describeRange(range)} reads that snapshot's data, and ${shares.length ? `${shares.length} snapshot tables could hold the active tree's own version` : 'no table holds the active tree’s own version'}, so the span is named lost — \`qcow2-doctor salvage\` may recover it`,
    });
  }
}

/**
 * The one lost L2 table that shares a data cluster with `snapshotTable` at the same entry (copy on
 * write keeps every entry the active disk did not rewrite), or undefined when none or several do.
 */
async function lostDescendant(
  ctx: PlanContext,
  snapshotTable: number,
  all: LostL2Table[],
): Promise<number | undefined> {
  const cs = ctx.clusterSize;
  const lost = all.filter((t) => !ctx.reserved.has(t.cluster));
  if (!lost.length) return undefined;
  const mine = await readPadded(ctx.io, snapshotTable, cs);
  const step = ctx.geo.l2EntrySize;
  const found: number[] = [];
  for (const t of lost) {
    const theirs = await readPadded(ctx.io, t.cluster * cs, cs);
    for (let p = 0; p < cs; p += step) {
      const hi = u32(mine, p) & C.L2E_OFFSET_MASK_HI;
      const lo = u32(mine, p + 4) & C.L2E_OFFSET_MASK_LO;
      if ((u32(mine, p) & C.OFLAG_COMPRESSED_HI) !== 0 || (hi === 0 && lo === 0)) continue;
      if ((u32(theirs, p) & C.L2E_OFFSET_MASK_HI) === hi && (u32(theirs, p + 4) & C.L2E_OFFSET_MASK_LO) === lo) {
        found.push(t.cluster * cs);
        break;
      }
    }
  }
  return found.length === 1 ? found[0] : undefined;
}

/**
 * Whose table the lost one is, judged by the entries it maps differently from `snapshotTable`: the
 * active tree's copy-on-write table wrote them after the snapshot, so each carries COPIED; a snapshot's
 * own older table had COPIED cleared on every entry when the snapshot was taken. Mixed or no such
 * entries prove neither.
 */
async function writtenSince(
  ctx: PlanContext,
  snapshotTable: number,
  lostTable: number,
): Promise<'active' | 'snapshot' | 'unknown'> {
  const mine = await readPadded(ctx.io, snapshotTable, ctx.clusterSize);
  const theirs = await readPadded(ctx.io, lostTable, ctx.clusterSize);
  let copied = 0;
  let frozen = 0;
  for (let p = 0; p < theirs.length; p += ctx.geo.l2EntrySize) {
    const hi = u32(theirs, p);
    const offHi = hi & C.L2E_OFFSET_MASK_HI;
    const offLo = u32(theirs, p + 4) & C.L2E_OFFSET_MASK_LO;
    if ((hi & C.OFLAG_COMPRESSED_HI) !== 0 || (offHi === 0 && offLo === 0)) continue;
    if ((u32(mine, p) & C.L2E_OFFSET_MASK_HI) === offHi && (u32(mine, p + 4) & C.L2E_OFFSET_MASK_LO) === offLo)
      continue;
    if ((hi & C.OFLAG_COPIED_HI) !== 0) copied++;
    else frozen++;
  }
  if (copied && !frozen) return 'active';
  if (frozen && !copied) return 'snapshot';
  return 'unknown';
}

/** Whether any uncompressed entry of the L2 table at `table` carries the COPIED flag. */
async function hasCopiedEntries(ctx: PlanContext, table: number): Promise<boolean> {
  const t = await readPadded(ctx.io, table, ctx.clusterSize);
  for (let p = 0; p < t.length; p += ctx.geo.l2EntrySize) {
    const hi = u32(t, p);
    if ((hi & C.OFLAG_COPIED_HI) !== 0 && (hi & C.OFLAG_COMPRESSED_HI) === 0) return true;
  }
  return false;
}

function relinkLost(ctx: PlanContext, e: { entry: number; index: number; l2: number }, to: number): void {
  ctx.reserved.add(to / ctx.clusterSize);
  ctx.entryFix.set(e.entry, {
    hi: (Math.floor(to / 0x1_0000_0000) | C.OFLAG_COPIED_HI) >>> 0,
    lo: to >>> 0,
    why: `active L1 table entry ${e.index}: re-link the lost L2 table at ${at(to)}`,
  });
  ctx.fixes.push({
    kind: 're-link-swapped-l2',
    counts: 'corruption',
    differsFromQemu: true,
    text: `active L1 table entry ${e.index} pointed at a snapshot's L2 table at ${at(e.l2)} (referenced once more than its refcount allows), while the lost L2 table at ${at(to)} — linked from nothing, still mapping data — shares that table's data clusters at the same entries (the active tree's copy-on-write of it); re-linked there, every byte of the span is kept — QEMU would free the lost table and its data`,
  });
  ctx.corruptionsFixed++;
}
