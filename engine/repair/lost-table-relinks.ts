/**
 * Lost L2 tables (lost-l2-tables.ts) are never freed. -r all re-links a lost table in place where its
 * L1 slot is certain — a surviving snapshot L1 holds the same table at that slot, or it is the only
 * lost table and the L1 table has one free slot — and otherwise refuses that part, naming the
 * candidates (nothing is freed while a part is refused). -r leaks keeps them and the data they map.
 */
import * as C from '../format/constants.js';
import { activeSlotEmpty, findLostL2Tables, type LostL2Table } from './lost-l2-tables.js';
import { at, type PlanContext } from './plan-context.js';

export async function planLostL2Tables(ctx: PlanContext): Promise<void> {
  const cs = ctx.clusterSize;
  const lost = (await findLostL2Tables(ctx.img, ctx.walk)).filter((t) => !ctx.reserved.has(t.cluster));
  if (!lost.length) return;
  for (const t of lost) for (const c of [t.cluster, ...t.dataClusters]) ctx.reserved.add(c);
  if (!ctx.all) {
    keepLostTables(ctx, lost);
    return;
  }
  const h = ctx.header;
  const free: number[] = [];
  for (let i = 0; i < h.l1Size; i++)
    if (activeSlotEmpty(ctx.img, i) && !ctx.entryFix.has(h.l1TableOffset + i * 8)) free.push(i);
  const placed = new Map<number, { table: LostL2Table; why: string }>();
  const uncertain: LostL2Table[] = [];
  for (const t of lost) {
    const slot = t.snapshotSlots.length === 1 ? t.snapshotSlots[0]! : -1;
    if (slot >= 0 && free.includes(slot) && !placed.has(slot))
      placed.set(slot, { table: t, why: `a surviving snapshot L1 table holds the same table at slot ${slot}` });
    else uncertain.push(t);
  }
  const stillFree = free.filter((i) => !placed.has(i));
  if (uncertain.length === 1 && stillFree.length === 1) {
    placed.set(stillFree[0]!, {
      table: uncertain.pop()!,
      why: `it is the only lost table and slot ${stillFree[0]} the only free slot of the active L1 table`,
    });
  }
  for (const [slot, { table, why }] of placed) {
    const off = table.cluster * cs;
    const entry = h.l1TableOffset + slot * 8;
    ctx.entryFix.set(entry, {
      hi: (Math.floor(off / 0x1_0000_0000) | C.OFLAG_COPIED_HI) >>> 0,
      lo: off >>> 0,
      why: `active L1 table entry ${slot}: re-link the lost L2 table at ${at(off)}`,
    });
    ctx.fixes.push({
      kind: 're-link-lost-l2',
      counts: 'corruption',
      differsFromQemu: true,
      text: `active L1 table entry ${slot} was empty while the L2 table at ${at(off)} still maps ${table.dataClusters.length} data cluster(s); re-linked there because ${why} — QEMU would free the table and its data`,
    });
    ctx.corruptionsFixed++;
  }
  if (uncertain.length) {
    ctx.refusals.push({
      kind: 'lost-l2-tables',
      what: `${uncertain.length} L2 table(s) still mapping guest data are linked from no L1 entry (candidates: ${describe(uncertain, cs)})`,
      decide: `which L1 slot each belongs to cannot be told from the image (free slots: ${stillFree.length}); nothing was freed — recover the data with \`qcow2-doctor salvage\`, which places tables by evidence and says what it guessed`,
    });
    ctx.keepAllLeaks = true;
  }
}

/** -r leaks: the lost tables and their data are no leaks; say what is kept and why. */
function keepLostTables(ctx: PlanContext, lost: LostL2Table[]): void {
  let data = 0;
  for (const t of lost) {
    ctx.keep.add(t.cluster);
    for (const c of t.dataClusters) ctx.keep.add(c);
    data += t.dataClusters.length;
  }
  ctx.fixes.push({
    kind: 'lost-tables-kept',
    counts: 'none',
    differsFromQemu: true,
    text: `kept ${lost.length} lost L2 table(s) (${describe(lost, ctx.clusterSize)}) and the ${data} data cluster(s) they map: they still hold guest data that no L1 entry points at, so they are not leaks (QEMU would free them); run -r all to re-link them where their place is certain, or \`qcow2-doctor salvage\``,
  });
}

function describe(tables: LostL2Table[], clusterSize: number): string {
  const shown = tables
    .slice(0, 8)
    .map((t) => `${at(t.cluster * clusterSize)} (${t.dataClusters.length} data clusters)`);
  return tables.length > 8 ? `${shown.join(', ')} and ${tables.length - 8} more` : shown.join(', ');
}
