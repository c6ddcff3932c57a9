// Data clusters a disk lost its entry for while another disk of the image still maps them. Internal
// snapshots share clusters at the same guest offset (a snapshot copies the L1; QEMU never moves a
// shared cluster), and every L1 that reaches a cluster counts one reference to it. So when a disk's
// entry at a guest cluster is empty while another disk maps cluster X there, and X's refcount
// counts exactly as many references no table holds any more as there are such empty entries, those
// entries held X: it is read back from there, with certainty. Any other excess says only that some
// reference to X was lost: the empty range may have held X, so it is reported lost, naming X.
import { u32 } from '../format/bytes.js';
import type { Geometry } from '../format/header.js';
import { ClusterType, classifyL2, dataClusters, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';

interface Table {
  host: number;
  l1Index: number;
  buf: Uint8Array;
  /** The disks that read through this table. */
  views: GuestView[];
}

/** Fill `view.shared` of every disk whose empty entries the refcounts prove (or suggest) held data. */
export async function recoverSharedEntries(
  st: ReconstructState,
  views: GuestView[],
  activeL1Readable: boolean,
): Promise<void> {
  const probe = st.probe;
  // Lazy refcounts lag behind the tables: an excess proves nothing then. Nor can it without the
  // active L1: its entries are the references to count.
  if (!probe || views.length < 2 || st.hints.dirty || !activeL1Readable) return;
  const { tables, doubtful } = await certainTables(st, views);
  const elsewhere = await mappedElsewhere(st, tables);
  // References per host cluster index: a compressed stream counts one on each cluster it touches.
  const known = new Map<number, number>();
  for (const t of tables.values())
    for (let j = 0; j < st.l2Entries; j++)
      for (const c of entryRef(st, t.buf, j)?.clusters ?? []) known.set(c, (known.get(c) ?? 0) + t.views.length);
  const byIndex = new Map<number, Table[]>();
  for (const t of tables.values()) byIndex.set(t.l1Index, [...(byIndex.get(t.l1Index) ?? []), t]);
  const found: string[] = [];
  for (const [i, ts] of byIndex) {
    if (ts.length < 2 || doubtful.has(i)) continue;
    for (let j = 0; j < st.l2Entries; j++) {
      const empty = ts.filter((t) => isEmpty(st, t.buf, j));
      if (!empty.length || empty.length === ts.length) continue;
      const refs = new Map<string, EntryRef>();
      for (const t of ts) {
        const r = entryRef(st, t.buf, j);
        if (r) refs.set(r.key, r);
      }
      // Two different clusters at one guest offset: the disks diverged here; nothing to conclude.
      if (refs.size !== 1) continue;
      const ref = [...refs.values()][0]!;
      const x = ref.host;
      // Each cluster the entry reaches must count references no table holds; the least says how many.
      let excess = Number.POSITIVE_INFINITY;
      let rc: number | undefined;
      let exact = true;
      for (const c of ref.clusters) {
        const r = await probe.refcount(c);
        const e = r === undefined ? 0 : r - (known.get(c) ?? 0);
        if (excess !== Number.POSITIVE_INFINITY && e !== excess) exact = false;
        if (e < excess) {
          excess = e;
          rc = r;
        }
      }
      if (!(excess > 0)) continue;
      const paths = empty.reduce((n, t) => n + t.views.length, 0);
      const certain = excess === paths && exact && !ref.clusters.some((c) => elsewhere.has(c));
      const g = i * st.l2Entries + j;
      const evidence = certain
        ? `the entry was empty, but another disk maps cluster ${hx(x)} here and its refcount ${rc} counts ${excess} reference(s) no table holds: exactly the disks whose entry is empty`
        : `the entry is empty, but cluster ${hx(x)} that another disk maps here has ${excess} reference(s) no table holds (refcount ${rc}): this range may have held it`;
      for (const t of empty)
        for (const v of t.views) {
          v.shared ??= new Map();
          v.shared.set(g, { host: x, certain, evidence, ...(ref.compressed ? { compressed: ref.compressed } : {}) });
          found.push(`${v.kind === 'active' ? 'active disk' : `snapshot ${v.id}`} guest ${hx(g * st.cs)}`);
        }
    }
  }
  if (found.length)
    st.warnings.push(
      `${found.length} empty L2 entr${found.length === 1 ? 'y' : 'ies'} lost a cluster another disk still maps (by the refcounts): ${found.slice(0, 6).join(', ')}${found.length > 6 ? ', …' : ''}`,
    );
}

/** Every certain L2 table the disks read through, and the L1 indices where some disk's table is not
 * certain (destroyed or guessed): a reference there may be one we cannot see. */
async function certainTables(
  st: ReconstructState,
  views: GuestView[],
): Promise<{ tables: Map<number, Table>; doubtful: Set<number> }> {
  const tables = new Map<number, Table>();
  const doubtful = new Set<number>();
  for (const v of views) {
    for (const l of v.lostL2) doubtful.add(l.l1Index);
    for (const p of v.l2.values()) {
      if (p.confidence < 1) {
        doubtful.add(p.l1Index);
        continue;
      }
      const t = tables.get(p.host);
      if (!t) tables.set(p.host, { host: p.host, l1Index: p.l1Index, buf: await st.cache.get(p.host), views: [v] });
      else if (t.l1Index === p.l1Index) t.views.push(v);
      else doubtful.add(p.l1Index).add(t.l1Index);
    }
  }
  return { tables, doubtful };
}

/** Data clusters that L2-like tables no disk reads through map, when their refcount says they are live. */
async function mappedElsewhere(st: ReconstructState, tables: Map<number, Table>): Promise<Set<number>> {
  const out = new Set<number>();
  for (const [o, r] of st.role) {
    if (r !== 'l2' || tables.has(o)) continue;
    const rc = await st.probe!.refcount(o / st.cs);
    if (rc === 0) continue;
    const buf = await st.cache.get(o);
    for (let j = 0; j < st.l2Entries; j++) for (const c of entryRef(st, buf, j)?.clusters ?? []) out.add(c);
  }
  return out;
}

interface EntryRef {
  /** Tells entries apart: the same key is the same data. */
  key: string;
  /** The host offset of its cluster, or of its compressed stream. */
  host: number;
  /** Host cluster indices it holds a reference to. */
  clusters: number[];
  compressed?: { hi: number; lo: number };
}

/** What a standard or extended entry holds: a cluster (normal or preallocated zero), or a compressed stream. */
function entryRef(st: ReconstructState, buf: Uint8Array, j: number): EntryRef | undefined {
  const hi = u32(buf, j * st.step);
  const lo = u32(buf, j * st.step + 4);
  const type = classifyL2(hi, lo, st.extendedL2, false);
  if (type === ClusterType.Compressed) {
    const geo = { csizeShift: 62 - (st.clusterBits - 8), csizeMask: 2 ** (st.clusterBits - 8) - 1 } as Geometry;
    const d = decodeCompressed(hi, lo, geo);
    if (!d.offset || d.offset + d.size > st.fileSize) return undefined;
    const clusters = dataClusters(hi, lo, geo, st.cs);
    return { key: `c${hi}:${lo}`, host: d.offset, clusters, compressed: { hi, lo } };
  }
  if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) return undefined;
  const x = l2Offset(hi, lo);
  return x % st.cs === 0 && x < st.fileSize ? { key: `n${x}`, host: x, clusters: [x / st.cs] } : undefined;
}

function isEmpty(st: ReconstructState, buf: Uint8Array, j: number): boolean {
  for (let b = 0; b < st.step; b += 4) if (u32(buf, j * st.step + b) !== 0) return false;
  return true;
}
