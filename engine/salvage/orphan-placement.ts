// Placing L2 tables that no surviving L1 entry references into the active disk, most certain
// evidence first: data shared with a snapshot's table at the same index, structures in the data
// that record their own position, the one table left for the one slot left, and only then the
// host order (QEMU appends L2 tables as the guest first touches each range), as a guess.
import { placeByEvidence } from './placement-evidence.js';
import type { ReconstructState } from './reconstruct-state.js';
import type { SnapshotInfo } from './snapshot-recovery.js';
import { standardTarget } from './table-reader.js';
import type { GuestView } from './types.js';
import { lostWithHost } from './lost-index.js';

export interface OrphanContext {
  active: GuestView;
  activeState: 'valid' | 'damaged' | 'lost';
  snapViews: Array<{ info: SnapshotInfo; view: GuestView }>;
  slots: number;
  virtualSize: number;
  /** The disk size is read from metadata or given by the user (so is the slot count). */
  sizeCertain: boolean;
}

export async function placeOrphans(st: ReconstructState, list: number[], ctx: OrphanContext): Promise<void> {
  if (!list.length) return;
  const remaining = new Set(list);
  if (ctx.snapViews.length) await bySnapshotMatch(st, list, remaining, ctx);
  await byEvidence(st, remaining, ctx);
  dropPlacedFromLost(ctx.active);
  byOrder(st, remaining, ctx);
  inherit(st, ctx);
}

const taken = (ctx: OrphanContext, i: number): boolean =>
  ctx.active.l2.has(i) || lostWithHost(ctx.active.lostL2).has(i);

function dropPlacedFromLost(v: GuestView): void {
  v.lostL2 = v.lostL2.filter((l) => !v.l2.has(l.l1Index));
}

/** Data shared with a snapshot's L2 at the same L2 index: the same L1 index (a COW copy). */
async function bySnapshotMatch(
  st: ReconstructState,
  list: number[],
  remaining: Set<number>,
  ctx: OrphanContext,
): Promise<void> {
  const { step, l2Entries } = st;
  const sample = new Map<number, Array<{ o: number; j: number }>>();
  for (const o of list) {
    const buf = await st.cache.get(o);
    let n = 0;
    for (let j = 0; j < l2Entries && n < 32; j++) {
      const t = standardTarget(buf, j * step);
      if (!t) continue;
      n++;
      sample.set(t, [...(sample.get(t) ?? []), { o, j }]);
    }
  }
  const votes = new Map<number, Map<number, number>>();
  const seen = new Set<string>();
  for (const sv of ctx.snapViews)
    for (const p of sv.view.l2.values()) {
      const key = `${p.host}:${p.l1Index}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const buf = await st.cache.get(p.host);
      for (let j = 0; j < l2Entries; j++) {
        const t = standardTarget(buf, j * step);
        for (const h of (t ? sample.get(t) : undefined) ?? []) {
          if (h.j !== j) continue;
          const m = votes.get(h.o) ?? new Map<number, number>();
          m.set(p.l1Index, (m.get(p.l1Index) ?? 0) + 1);
          votes.set(h.o, m);
        }
      }
    }
  const claims: Array<{ o: number; i: number; n: number }> = [];
  for (const [o, m] of votes) {
    let bi = -1,
      bn = 0;
    for (const [i, n] of m)
      if (n > bn) {
        bi = i;
        bn = n;
      }
    if (bi >= 0) claims.push({ o, i: bi, n: bn });
  }
  claims.sort((a, b) => b.n - a.n || b.o - a.o); // more shared data first; then the newer copy
  let matched = 0;
  for (const c of claims) {
    if (taken(ctx, c.i) || c.i >= ctx.slots || !remaining.has(c.o)) continue;
    ctx.active.l2.set(c.i, { l1Index: c.i, host: c.o, source: 'snapshot-match', confidence: 0.95 });
    remaining.delete(c.o);
    matched++;
  }
  if (matched)
    st.guesses.push(
      `${matched} L2 table(s) of the active disk placed by the data they share with a snapshot's L2 table at the same index`,
    );
}

/** Structures in the data that record their own guest offset: certain placements. */
async function byEvidence(st: ReconstructState, remaining: Set<number>, ctx: OrphanContext): Promise<void> {
  const placed = new Map<number, number>();
  for (const p of ctx.active.l2.values()) if (p.confidence === 1) placed.set(p.host, p.l1Index);
  const pins = await placeByEvidence(st, {
    orphans: [...remaining],
    placed,
    // A disk of unknown size: any slot a structure names is possible.
    slots: ctx.sizeCertain ? ctx.slots : Math.floor(2 ** 53 / st.coverage),
    virtualSize: ctx.sizeCertain ? ctx.virtualSize : 0,
    free: (i) => !taken(ctx, i),
  });
  for (const p of pins) {
    ctx.active.l2.set(p.l1Index, {
      l1Index: p.l1Index,
      host: p.host,
      source: 'evidence',
      confidence: 1,
      evidence: p.evidence,
    });
    remaining.delete(p.host);
  }
  if (pins.length)
    st.warnings.push(
      `${pins.length} L2 table(s) with no surviving L1 entry placed by structures in their data that record their own position (partition tables, file system superblocks, volume labels)`,
    );
}

/** The rest in host order: a guess, except the one table left for the one slot left. */
function byOrder(st: ReconstructState, remaining: Set<number>, ctx: OrphanContext): void {
  const rest = [...remaining].sort((a, b) => a - b);
  if (!rest.length) return;
  const { slots, active } = ctx;
  const snapCovered = (i: number): boolean => ctx.snapViews.some((sv) => sv.view.l2.has(i));
  // Slots whose L1 entry is unreadable held a table: fill those first.
  const damaged = active.lostL2
    .filter((l) => l.host === 0 && l.l1Index < slots)
    .map((l) => l.l1Index)
    .sort((a, b) => a - b);
  let free: number[] = [];
  let fromDamaged = false;
  if (damaged.length >= rest.length) {
    free = damaged;
    fromDamaged = true;
  } else {
    for (let i = 0; i < slots; i++) if (!taken(ctx, i) && !snapCovered(i)) free.push(i);
    if (free.length < rest.length) {
      free = [];
      for (let i = 0; i < slots; i++) if (!taken(ctx, i)) free.push(i);
    }
  }
  const exact = free.length === rest.length;
  // Certain only when nothing else could hold it: a disk of known size, no snapshot that might
  // still share a slot, and every other slot taken by a certain placement.
  const forced =
    exact &&
    rest.length === 1 &&
    !fromDamaged &&
    ctx.sizeCertain &&
    !ctx.snapViews.length &&
    [...active.l2.values()].every((p) => p.confidence === 1);
  const conf = forced ? 1 : exact ? (rest.length === 1 ? 0.9 : 0.7) : 0.4;
  const source = forced ? 'only-slot' : 'ordering';
  const n = Math.min(rest.length, free.length);
  if (exact) {
    for (let k = 0; k < n; k++)
      active.l2.set(free[k]!, { l1Index: free[k]!, host: rest[k]!, source, confidence: conf });
  } else {
    // Keep guest order = host order around the tables already placed: each orphan goes to the
    // first free slot after the slot of the table just before it in the file.
    const open = new Set(free);
    for (const h of rest.slice(0, n)) {
      let after = -1,
        hostBefore = -1;
      for (const q of active.l2.values())
        if (q.host < h && q.host > hostBefore) {
          hostBefore = q.host;
          after = q.l1Index;
        }
      const pick = free.find((i) => open.has(i) && i > after) ?? free.find((i) => open.has(i));
      if (pick === undefined) break;
      open.delete(pick);
      active.l2.set(pick, { l1Index: pick, host: h, source, confidence: conf });
    }
  }
  dropPlacedFromLost(active);
  // A table placed by guess may belong in any of the free slots: those left empty may have held it.
  if (n && !forced) active.guessHomes = new Set(free);
  if (n && forced)
    st.warnings.push(
      `1 L2 table with no surviving L1 entry placed in the only free L1 slot (${free[0]}) of a disk of known size`,
    );
  else if (n)
    st.guesses.push(
      `${n} L2 table(s) with no surviving L1 entry placed in host order into ${free.length} free L1 slot(s) (confidence ${conf}): the data they map may belong elsewhere in the disk`,
    );
  if (rest.length > n)
    st.warnings.push(
      `${rest.length - n} L2 table(s) referenced by no surviving L1 were not used (no free L1 slot in the active disk): they may belong to a lost snapshot`,
    );
}

/** Slots still empty that a snapshot maps: the active disk still shares the newest snapshot's table.
 * Only where the active L1 says nothing readable: all of it when lost, else its unreadable entries. */
function inherit(st: ReconstructState, ctx: OrphanContext): void {
  const { active, activeState, snapViews, slots } = ctx;
  const unreadable = new Set(active.lostL2.filter((l) => l.host === 0).map((l) => l.l1Index));
  if (!((activeState === 'lost' || unreadable.size) && snapViews.length)) return;
  const newest = [...snapViews].sort((a, b) => b.info.date - a.info.date || b.info.order - a.info.order);
  let inherited = 0;
  for (let i = 0; i < slots; i++) {
    if (active.l2.has(i) || (activeState !== 'lost' && !unreadable.has(i))) continue;
    const sv = newest.find((x) => x.view.l2.has(i));
    if (!sv) continue;
    const p = sv.view.l2.get(i)!;
    active.l2.set(i, { l1Index: i, host: p.host, source: 'inherited', confidence: 0.8 });
    inherited++;
  }
  dropPlacedFromLost(active);
  if (inherited)
    st.guesses.push(`${inherited} L1 slot(s) of the active disk assumed unchanged since the newest snapshot`);
}
