// L2 tables holding byte for byte the entries of another L2 table placed at a different L1 slot (in
// the same disk or another one). QEMU never makes such a pair: copy on write copies a table to change
// it, into the same slot, and a data cluster belongs to one guest offset. So one of them was written
// over with the other's content, and its span would read the other span's data at a "certain" place.
// Which one was written over is told by a third table at the same slot sharing data clusters with the
// content at the same entries (the other disk's copy-on-write relative); otherwise by nothing, and
// every span holding the content is named lost (copies within one disk are left to duplicate-mappings.ts).
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import { QCOW_MAX_L1_SIZE } from '../format/constants.js';
import { hx, readInFile, type ReconstructState } from './reconstruct-state.js';
import { l1Target } from './table-reader.js';
import type { GuestView } from './types.js';

interface Ref {
  view: GuestView;
  slot: number;
  host: number;
}

export async function dropCrossSlotCopies(st: ReconstructState, views: GuestView[]): Promise<void> {
  const refs = await l1References(st, views);
  // Per table cluster: its entries (index → data cluster), or nothing when it maps no data.
  const entries = new Map<number, Map<number, number>>();
  const byHash = new Map<number, number[]>();
  for (const { host } of refs) {
    if (entries.has(host)) continue;
    const buf = await st.cache.get(host);
    const e = dataEntries(st, buf);
    entries.set(host, e);
    if (!e.size) continue;
    const h = hashOf(buf);
    byHash.set(h, [...(byHash.get(h) ?? []), host]);
  }
  for (const hosts of byHash.values()) {
    if (hosts.length < 2) continue;
    for (const twins of await sameContent(st, hosts)) dropClass(st, refs, entries, twins);
  }
}

/**
 * Every (disk, L1 slot, table) the disks' placements and their L1 tables name: a table a snapshot's L1
 * names counts even when the reconstruction did not read it as an L2 table (guest data that looks like
 * refcount blocks can make an L2 table pass for a refcount table).
 */
async function l1References(st: ReconstructState, views: GuestView[]): Promise<Ref[]> {
  const out: Ref[] = [];
  const seen = new Set<string>();
  const add = (view: GuestView, slot: number, host: number): void => {
    const k = `${view.id}/${slot}/${host}`;
    if (!seen.has(k)) out.push({ view, slot, host });
    seen.add(k);
  };
  for (const view of views) {
    for (const [slot, p] of view.l2) add(view, slot, p.host);
    if (view.l1Offset === undefined || view.l1Offset >= st.fileSize) continue;
    const slots = Math.min(QCOW_MAX_L1_SIZE / 8, Math.ceil(view.virtualSize / st.coverage));
    const l1 = await readInFile(st, view.l1Offset, Math.min(slots * 8, st.fileSize - view.l1Offset));
    for (let i = 0; (i + 1) * 8 <= l1.length; i++) {
      const t = l1Target(l1, i * 8);
      if (t > 0 && t % st.cs === 0 && st.tables.has(t)) add(view, i, t);
    }
  }
  return out;
}

/** Drop the placements of one class of identical tables that are not at the slot the content belongs to. */
function dropClass(
  st: ReconstructState,
  refs: Ref[],
  entries: Map<number, Map<number, number>>,
  twins: Set<number>,
): void {
  const holders = refs.filter((p) => twins.has(p.host));
  const slots = new Set(holders.map((p) => p.slot));
  if (slots.size < 2) return;
  const content = entries.get([...twins][0]!)!;
  const owners = [...slots].filter((s) =>
    refs.some((p) => p.slot === s && !twins.has(p.host) && sharesEntry(content, entries.get(p.host))),
  );
  const owner = owners.length === 1 ? owners[0] : undefined;
  // Copies inside one disk with nothing to tell them apart: duplicate-mappings.ts places both by guess.
  if (owner === undefined && new Set(holders.map((p) => p.view)).size < 2) return;
  const tables = [...twins].map(hx).join(', ');
  for (const p of holders) {
    if (p.slot === owner || p.view.l2.get(p.slot)?.host !== p.host) continue;
    p.view.l2.delete(p.slot);
    const why =
      owner === undefined
        ? `the L2 tables ${tables} hold the same entries at L1 indexes ${[...slots].join(', ')}: one was written over with another's content, and which cannot be told`
        : `the L2 table at ${hx(p.host)} holds the entries of L1 index ${owner}'s table (another table at index ${owner} shares their data clusters): it was written over with them`;
    p.view.lostL2.push({ l1Index: p.slot, host: p.host, reason: `${why}; the data it mapped is lost` });
    st.warnings.push(
      `${p.view.name}: ${why}; L1 index ${p.slot} is not read from it, and its ${st.coverage} guest bytes are lost`,
    );
  }
}

/** Classes (two or more tables) of byte-identical clusters among `hosts`. */
async function sameContent(st: ReconstructState, hosts: number[]): Promise<Set<number>[]> {
  const classes: { first: number; members: Set<number> }[] = [];
  for (const h of hosts) {
    const buf = await st.cache.get(h);
    let home: Set<number> | undefined;
    for (const c of classes)
      if (sameBytes(buf, await st.cache.get(c.first))) {
        home = c.members;
        break;
      }
    if (home) home.add(h);
    else classes.push({ first: h, members: new Set([h]) });
  }
  return classes.map((c) => c.members).filter((m) => m.size > 1);
}

function sharesEntry(a: Map<number, number>, b: Map<number, number> | undefined): boolean {
  if (!b) return false;
  for (const [j, x] of a) if (b.get(j) === x) return true;
  return false;
}

/** Entry index → whole data cluster, for the entries that map one. */
function dataEntries(st: ReconstructState, buf: Uint8Array): Map<number, number> {
  const out = new Map<number, number>();
  for (let j = 0; j < st.l2Entries; j++) {
    const hi = u32(buf, j * st.step);
    const lo = u32(buf, j * st.step + 4);
    const type = classifyL2(hi, lo, st.extendedL2, false);
    if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
    const x = l2Offset(hi, lo);
    if (x > 0 && x % st.cs === 0 && x < st.fileSize) out.set(j, x);
  }
  return out;
}

/** FNV-1a over the whole cluster: tables often start with the same empty entries. */
function hashOf(buf: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < buf.length; k++) h = Math.imul(h ^ buf[k]!, 0x01000193);
  return h >>> 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
