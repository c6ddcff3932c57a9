// Which pointer tables are L1 tables, L2 tables and refcount tables, by what they point to; and the
// refcount structure, when it survives, to tell live tables from stale copies.
import * as C from '../format/constants.js';
import type { PointerTableSummary } from '../format/cluster-content.js';
import { isZero, looksLikeRefcountBlock } from '../format/cluster-content.js';
import { readPadded } from '../io/positional-io.js';
import type { ReconstructState, TableRole } from './reconstruct-state.js';
import { l1Target, RefcountProbe, standardTarget } from './table-reader.js';

/** Decide every table's role; tables that surviving metadata names keep the role it gives them. */
export async function assignRoles(st: ReconstructState): Promise<void> {
  const { hints, cs } = st;
  // An L1 whose L2 tables were all destroyed points only at garbage: the header still names it.
  const named = new Map<number, TableRole>();
  if (hints.intact && hints.l1Offset !== undefined && hints.l1Size !== undefined)
    for (let o = hints.l1Offset; o < hints.l1Offset + hints.l1Size * 8; o += cs) named.set(o - (o % cs), 'l1');
  if (hints.intact && hints.refcountTableOffset !== undefined)
    for (let k = 0; k < (hints.refcountTableClusters ?? 1); k++)
      named.set(hints.refcountTableOffset + k * cs, 'reftable');
  // What the intact header's L1 points at is read as an L2 table, whatever a damaged entry in it
  // now points at (a data entry redirected onto a table must not turn the table into an L1).
  if (hints.intact && hints.l1Offset !== undefined && hints.l1Size !== undefined) {
    const l1 = await readPadded(st.io, hints.l1Offset, Math.min(hints.l1Size, C.QCOW_MAX_L1_SIZE / 8) * 8);
    const tables = new Set(st.findings.tables.map((t) => t.offset));
    for (let p = 0; p < l1.length; p += 8) {
      const t = l1Target(l1, p);
      if (t && tables.has(t) && !named.has(t)) named.set(t, 'l2');
    }
  }
  await adoptNamedRefcountBlocks(st, named);
  for (const t of st.findings.tables)
    if (!st.refblocks.has(t.offset)) st.role.set(t.offset, named.get(t.offset) ?? (await tableRole(st, t)));
}

/**
 * Refcount blocks the intact header's refcount table names: those the scan took for a pointer table
 * when their content validates as a block (with 64-bit refcounts a block of ones reads as L2 entries
 * with the zero flag), and with refcounts under 8 bits, whose content proves nothing, any cluster
 * that is no table. A table the header's L1 names stays what the L1 says.
 */
async function adoptNamedRefcountBlocks(st: ReconstructState, named: Map<number, TableRole>): Promise<void> {
  const { hints, cs, fileSize } = st;
  if (!hints.intact || hints.refcountTableOffset === undefined || hints.refcountOrder === undefined) return;
  const rt = await readPadded(
    st.io,
    hints.refcountTableOffset,
    Math.min((hints.refcountTableClusters ?? 1) * cs, C.QCOW_MAX_REFTABLE_SIZE),
  );
  const ctx = {
    clusterSize: cs,
    fileSize,
    targetLimit: st.limit,
    refcountOrder: hints.refcountOrder,
    extendedL2: false,
  };
  for (let p = 0; p < rt.length; p += 8) {
    const off = standardTarget(rt, p);
    if (!off || off % cs !== 0 || off >= fileSize || st.refblocks.has(off)) continue;
    // Also named by the L1: a refcount block by its content, unless as an L2 it would map data.
    if (named.has(off) && (named.get(off) !== 'l2' || (await mapsData(st, off)))) continue;
    // Refcounts of 1, 2 or 4 bits: any content is valid, so the header's word is all there is
    // (findRefcountProbe still demands that the table count its own cluster).
    if (hints.refcountOrder < 3 && !st.tables.has(off)) st.refblocks.add(off);
    if (!st.tables.has(off) || !looksLikeRefcountBlock(await st.cache.get(off), 0, ctx)) continue;
    st.tables.delete(off);
    st.refblocks.add(off);
    named.delete(off);
  }
}

/** Read as an L2 table, does the cluster map any cluster-aligned offset inside the file? */
async function mapsData(st: ReconstructState, off: number): Promise<boolean> {
  const buf = await st.cache.get(off);
  for (let p = 0; p < st.cs; p += 8) {
    const t = standardTarget(buf, p);
    if (t && t % st.cs === 0 && t < st.fileSize) return true;
  }
  return false;
}

async function tableRole(st: ReconstructState, t: PointerTableSummary): Promise<TableRole> {
  if (t.extended) return 'l2';
  if (t.compressed > 0 || t.zeroFlag > 0) return 'l2';
  const { cs } = st;
  const buf = await st.cache.get(t.offset);
  let total = 0,
    inTables = 0,
    inRb = 0;
  const others: number[] = [];
  for (let p = 0; p < cs; p += 8) {
    const x = standardTarget(buf, p);
    if (!x) continue;
    total++;
    if (st.tables.has(x)) inTables++;
    else if (st.refblocks.has(x)) inRb++;
    else others.push(x);
  }
  if (inRb * 2 >= total && t.copied === 0) return 'reftable';
  if (inTables * 2 > total) return 'l1';
  // An L1 whose L2 tables are empty (all entries zero) points at zero clusters.
  if (inTables > 0 && others.length <= 64) {
    let zeros = 0;
    for (const x of others) if (x < st.fileSize && isZero(await st.cache.get(x), 0, cs)) zeros++;
    if ((inTables + zeros) * 2 > total) return 'l1';
  }
  return 'l2';
}

/** A refcount table that describes itself (its own cluster counted in use), if any survives. */
export async function findRefcountProbe(st: ReconstructState): Promise<RefcountProbe | undefined> {
  const { hints, cs, fileSize } = st;
  const order = hints.refcountOrder ?? 4;
  const candidates: Array<{ off: number; clusters: number }> = [];
  if (hints.refcountTableOffset !== undefined)
    candidates.push({ off: hints.refcountTableOffset, clusters: hints.refcountTableClusters ?? 1 });
  for (const [o, r] of st.role) if (r === 'reftable') candidates.push({ off: o, clusters: 1 });
  for (const c of candidates) {
    if (c.off >= fileSize) continue;
    const rt = await readPadded(st.io, c.off, Math.min(c.clusters * cs, C.QCOW_MAX_REFTABLE_SIZE));
    const p = new RefcountProbe(st.io, rt, cs, order, fileSize, (o) => st.refblocks.has(o));
    const self = await p.refcount(c.off / cs);
    if (self !== undefined && self >= 1) return p;
  }
  return undefined;
}
