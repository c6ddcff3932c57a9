/**
 * Active L2 tables whose content is not this span's mapping any more: the cluster was overwritten
 * with another structure (a refcount block, an L1 or refcount table, another L2 table). Its entries
 * are then garbage (past the end of the file, pointing into tables, or mapping another span's data)
 * and what the table mapped before is gone: every entry that mapped data may now read zeros or other
 * data, and which entries held data cannot be told. So the whole guest span is named lost, not only
 * the entries the other phases drop or copy. The evidence, from the content and the other structures:
 *  - it reads as a refcount block (small counts in every entry) and has entries no L2 table holds;
 *  - most of its mappings point into metadata or at L2 tables (an L1 or refcount table's content), or
 *    it holds exactly the bytes of the refcount table or an L1 table (a small one maps one pointer);
 *  - it holds exactly the entries of another L2 table it shares data clusters with (a copy: which
 *    of the two was written over cannot be told, so both spans are named), or of a snapshot's table
 *    at the same slot (copy on write never leaves the two equal).
 */
import { looksLikeRefcountBlock } from '../format/cluster-content.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import { addLostRange, describeRange } from './guest-ranges.js';
import { snapshotL1s } from './lost-l2-tables.js';
import { at, type PlanContext } from './plan-context.js';
import type { Ref } from './references.js';

interface Foreign {
  table: number;
  what: string;
}

/** Tables claiming one data cluster that are compared as possible copies of each other. */
const MAX_CLAIMANTS = 4;

const isData = (r: Ref): boolean => r.kind === 'l2' || r.kind === 'snap-l2';

export async function planForeignL2Tables(ctx: PlanContext): Promise<void> {
  if (!ctx.all) return;
  const w = ctx.walk;
  const cs = ctx.clusterSize;
  const tableOf = (entry: number): number => entry - (entry % cs);
  const badIn = new Map<number, number>();
  for (const b of w.bad) if (b.active && b.kind.startsWith('l2-')) badIn.set(b.table, (badIn.get(b.table) ?? 0) + 1);
  const candidates = new Set<number>(badIn.keys());
  const pairs = new Map<number, Set<number>>();
  const pair = (a: number, b: number): void => {
    const s = pairs.get(a) ?? new Set<number>();
    s.add(b);
    pairs.set(a, s);
  };
  for (const [c, r] of w.first) if (r.kind === 'l2' && w.metadata.has(c)) candidates.add(tableOf(r.entry));
  for (const [c, list] of w.multi) {
    const data = list.filter(isData);
    const intoTable = w.metadata.has(c) || list.some((r) => !isData(r));
    if (intoTable) for (const r of data) if (r.kind === 'l2') candidates.add(tableOf(r.entry));
    // Data clusters two tables map at different guest offsets: one table may be a copy of the other.
    // (A copy makes two claimants; a cluster dozens of tables claim is no copy, and is not paired.)
    const byTable = new Map<number, number>();
    for (const r of data) if (!byTable.has(tableOf(r.entry))) byTable.set(tableOf(r.entry), r.guest);
    if (byTable.size < 2 || byTable.size > MAX_CLAIMANTS) continue;
    for (const [t, g] of byTable) for (const [u, h] of byTable) if (t !== u && g !== h) pair(t, u);
  }
  for (const t of pairs.keys()) candidates.add(t);

  // Read on demand, never all kept: an image may have many candidate tables.
  const read = (t: number): Promise<Uint8Array> => readPadded(ctx.io, t, cs);
  const foreign = new Map<number, Foreign>();
  for (const t of [...candidates].sort((a, b) => a - b)) {
    if (!w.activeL2.has(t) || foreign.has(t)) continue;
    const buf = await read(t);
    const what = await foreignContent(ctx, buf, badIn.get(t) ?? 0, pairs.get(t), read);
    if (!what) continue;
    foreign.set(t, { table: t, what: what.what });
    if (what.copyOf !== undefined && w.activeL2.has(what.copyOf) && !foreign.has(what.copyOf))
      foreign.set(what.copyOf, { table: what.copyOf, what: `the same entries as the L2 table at ${at(t)}` });
  }
  await snapshotTableCopies(ctx, foreign);
  for (const f of foreign.values()) nameSpan(ctx, f);
}

/**
 * Active tables holding exactly the entries of a snapshot's table at the same slot. Copy on write
 * never makes one (the copy is made to change an entry), so the active table was written over with
 * the snapshot's: the span reads the snapshot's data, and the active disk's own changes are lost.
 * Looked for only when some cluster is leaked (the active disk's own data then is).
 */
async function snapshotTableCopies(ctx: PlanContext, foreign: Map<number, Foreign>): Promise<void> {
  const w = ctx.walk;
  if (!w.snapshots.length) return;
  let leaked = false;
  for (const c of w.mismatched)
    if (c >= 1 && c < w.hostClusters && w.refs[c] === 0 && !w.onDiskUnknown[c] && w.onDisk[c]! >= 1) {
      leaked = true;
      break;
    }
  if (!leaked) return;
  const cs = ctx.clusterSize;
  const { bySlot: atSlot } = await snapshotL1s(ctx.img, w);
  for (const e of w.activeL1) {
    if (foreign.has(e.l2)) continue;
    const others = (atSlot.get(e.index) ?? []).filter((u) => u !== e.l2);
    if (!others.length) continue;
    const mine = await readPadded(ctx.io, e.l2, cs);
    if (isZeroTable(mine)) continue;
    for (const u of others)
      if (equalBytes(mine, await readPadded(ctx.io, u, cs))) {
        foreign.set(e.l2, {
          table: e.l2,
          what: `the same entries as the snapshot L2 table at ${at(u)} at the same slot`,
        });
        break;
      }
  }
}

function isZeroTable(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** What the table's content really is, when it is not an L2 table of its own span. */
async function foreignContent(
  ctx: PlanContext,
  buf: Uint8Array,
  bad: number,
  sharesWith: Set<number> | undefined,
  read: (t: number) => Promise<Uint8Array>,
): Promise<{ what: string; copyOf?: number } | undefined> {
  const w = ctx.walk;
  const cs = ctx.clusterSize;
  const cctx = {
    clusterSize: cs,
    fileSize: w.fileSize,
    targetLimit: w.fileSize,
    refcountOrder: ctx.geo.refcountOrder,
    extendedL2: ctx.geo.extendedL2,
  };
  if (bad > 0 && looksLikeRefcountBlock(buf, 0, cctx)) return { what: 'the content of a refcount block' };
  const step = ctx.geo.l2EntrySize;
  let mapped = 0;
  let intoTables = 0;
  for (let p = 0; p + 8 <= cs; p += step) {
    const hi = (buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!;
    const lo = ((buf[p + 4]! << 24) | (buf[p + 5]! << 16) | (buf[p + 6]! << 8) | buf[p + 7]!) >>> 0;
    const type = classifyL2(hi >>> 0, lo, ctx.geo.extendedL2, ctx.img.hasExternalData);
    if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
    const off = l2Offset(hi >>> 0, lo);
    if (off === 0) continue;
    mapped++;
    const c = Math.floor(off / cs);
    if (off % cs === 0 && (w.metadata.has(c) || w.allL2.has(off))) intoTables++;
  }
  if (intoTables >= 2 && intoTables * 2 > mapped)
    return { what: `pointers into other tables (${intoTables} of its ${mapped} mappings): an L1 or refcount table` };
  // One pointer into a table may be a single redirected entry; a byte-for-byte copy of a table is not.
  if (intoTables > 0) {
    const twin = await copiedTable(ctx, buf, read);
    if (twin) return { what: twin };
  }
  for (const u of sharesWith ?? []) {
    const other = await read(u);
    if (equalBytes(buf, other)) return { what: `the same entries as the L2 table at ${at(u)}`, copyOf: u };
  }
  return undefined;
}

/** Tables whose whole cluster another table may have been overwritten with (few, and read only then). */
const COPYABLE = new Set(['refcount table', 'active L1 table', 'inactive L1 table']);
const MAX_COMPARED = 64;

/** "a copy of the refcount table at 0x…" when the cluster holds exactly the bytes of such a table's cluster. */
async function copiedTable(
  ctx: PlanContext,
  buf: Uint8Array,
  read: (t: number) => Promise<Uint8Array>,
): Promise<string | undefined> {
  let compared = 0;
  for (const [c, what] of ctx.walk.metadata) {
    if (!COPYABLE.has(what)) continue;
    if (++compared > MAX_COMPARED) return undefined;
    if (equalBytes(buf, await read(c * ctx.clusterSize))) return `a copy of the ${what} at ${at(c * ctx.clusterSize)}`;
  }
  return undefined;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Name every guest span the table maps (one per active L1 entry pointing at it) as lost. */
function nameSpan(ctx: PlanContext, f: Foreign): void {
  const span = ctx.geo.l1Coverage;
  const ranges = ctx.walk.activeL1
    .filter((e) => e.l2 === f.table && e.index * span < ctx.header.size)
    .map((e) => ({ start: e.index * span, length: Math.min(span, ctx.header.size - e.index * span) }));
  if (!ranges.length) return;
  // The leaked data clusters the table mapped before are not counted as placed: which guest offset in the
  // span each belonged to cannot be told, so -r all still says it freed data nobody can place (exit 4).
  for (const r of ranges) addLostRange(ctx, r.start, r.length);
  ctx.fixes.push({
    kind: 'l2-table-foreign',
    counts: 'none',
    explain: true,
    text: `the L2 table at ${at(f.table)} holds ${f.what}, not the mapping of guest ${ranges.map(describeRange).join(', ')}: what it mapped before cannot be told, so the whole span is named lost (it reads as zeros, the backing file or other data now) — \`qcow2-doctor salvage\` of the original may find its data among the leaked clusters`,
  });
}
