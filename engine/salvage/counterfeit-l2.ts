// L2 tables whose cluster holds a copy of a live refcount structure (the refcount table or one of
// its blocks): the L1 entry is right but the table's content was overwritten. Read as L2 entries, a
// refcount table's offsets point at refcount blocks and a 64-bit refcount block's small counts look
// like "zero" flags, so the guest range would silently read as zeros or as metadata. The table's
// whole span is lost instead. Tables holding another slot's table are dropped too (copied-l2.ts).
import { isZero } from '../format/cluster-content.js';
import { dropCrossSlotCopies } from './copied-l2.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import { headerRefcountTable } from './metadata-clusters.js';
import type { GuestView } from './types.js';

/** Bytes compared first, as a cheap key, before the whole cluster. */
const KEY_BYTES = 64;

export async function dropCounterfeitL2(st: ReconstructState, views: GuestView[]): Promise<void> {
  await dropRefcountCopies(st, views);
  await dropCrossSlotCopies(st, views);
}

async function dropRefcountCopies(st: ReconstructState, views: GuestView[]): Promise<void> {
  const byKey = new Map<string, { host: number; what: string }[]>();
  const l2Hosts = new Set<number>();
  for (const v of views) for (const p of v.l2.values()) l2Hosts.add(p.host);
  for (const [host, what] of await refcountClusters(st, l2Hosts)) {
    const buf = await st.cache.get(host);
    if (isZero(buf, 0, buf.length)) continue;
    const key = keyOf(buf);
    const list = byKey.get(key) ?? [];
    list.push({ host, what });
    byKey.set(key, list);
  }
  if (!byKey.size) return;
  for (const v of views)
    for (const [i, p] of [...v.l2]) {
      const buf = await st.cache.get(p.host);
      const twin = await copyOf(st, buf, byKey.get(keyOf(buf)), p.host);
      if (!twin) continue;
      v.l2.delete(i);
      v.lostL2.push({
        l1Index: i,
        host: p.host,
        reason: `the L2 table at ${hx(p.host)} holds a copy of the ${twin}: its content was overwritten, the data it mapped is lost`,
      });
      st.warnings.push(
        `L2 table at ${hx(p.host)} (L1 index ${i}) is a byte-for-byte copy of the ${twin}: not read as an L2 table; its ${st.coverage} guest bytes are lost`,
      );
    }
}

/**
 * The refcount table's clusters and the blocks its entries name, as the intact header says. A 64-bit
 * block of small counts is not recognised by the scan (it looks like an L2 table), so the entries are
 * trusted here; an entry naming a cluster an L1 reads as an L2 table proves nothing about it.
 */
async function refcountClusters(st: ReconstructState, l2Hosts: Set<number>): Promise<Map<number, string>> {
  const { cs, fileSize } = st;
  const out = new Map<number, string>();
  const rt = await headerRefcountTable(st);
  if (!rt || rt.offset % cs !== 0) return out;
  for (let o = rt.offset; o < rt.offset + rt.bytes && o < fileSize; o += cs) out.set(o, `refcount table at ${hx(o)}`);
  for (const off of rt.entries)
    if (off > 0 && off % cs === 0 && off < fileSize && !l2Hosts.has(off) && !out.has(off))
      out.set(off, `refcount block at ${hx(off)}`);
  return out;
}

function keyOf(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, Math.min(KEY_BYTES, buf.length)).toString('hex');
}

async function copyOf(
  st: ReconstructState,
  buf: Uint8Array,
  candidates: { host: number; what: string }[] | undefined,
  self: number,
): Promise<string | undefined> {
  for (const c of candidates ?? []) {
    if (c.host === self) continue;
    const other = await st.cache.get(c.host);
    if (sameBytes(buf, other)) return c.what;
  }
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
