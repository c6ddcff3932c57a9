// Data clusters the refcounts count live that no table in the file maps, and that are no metadata:
// the L2 entries that placed them were lost (zeroed, or the table overwritten). The data is in the
// file, but where it belongs in the guest disk is unknown: each disk reports it lost, and names its
// unallocated ranges as where it may have belonged (--lost-found copies the data out).
import { u32 } from '../format/bytes.js';
import { isZero } from '../format/cluster-content.js';
import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import { headerRefcountTable } from './metadata-clusters.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView } from './types.js';

/** The bitmap of accounted clusters may take at most this many bytes (2^31 clusters). */
const MAX_BITMAP = 256 * 1024 * 1024;

class ClusterSet {
  private readonly bits: Uint8Array;
  constructor(
    private readonly n: number,
    private readonly cs: number,
  ) {
    this.bits = new Uint8Array(Math.ceil(n / 8));
  }
  mark(offset: number, bytes: number): void {
    if (offset < 0 || bytes <= 0) return;
    for (let c = Math.floor(offset / this.cs); c * this.cs < offset + bytes && c < this.n; c++)
      this.bits[c >> 3]! |= 1 << (c & 7);
  }
  has(c: number): boolean {
    return (this.bits[c >> 3]! & (1 << (c & 7))) !== 0;
  }
}

/** Every host cluster some table, metadata structure or L2-like cluster of the file accounts for. */
async function accountedClusters(st: ReconstructState, views: GuestView[], metadata: Map<number, string>) {
  const { cs, fileSize, hints } = st;
  const n = Math.ceil(fileSize / cs);
  const used = new ClusterSet(n, cs);
  used.mark(0, cs);
  for (const c of metadata.keys()) used.mark(c * cs, cs);
  for (const t of st.findings.tables) used.mark(t.offset, cs);
  // With the header's refcount table, the blocks it names are the refcount blocks (in `metadata`):
  // another cluster that reads like one (small 16-bit numbers) may be guest data.
  const named = await headerRefcountTable(st);
  if (named) for (const o of named.entries) if (st.refblocks.has(o)) used.mark(o, cs);
  if (!named) for (const o of st.refblocks) used.mark(o, cs);
  for (const o of st.findings.snapshotTables) used.mark(o, cs);
  if (hints.l1Offset !== undefined) used.mark(hints.l1Offset, Math.max(1, (hints.l1Size ?? 0) * 8));
  if (hints.refcountTableOffset !== undefined)
    used.mark(hints.refcountTableOffset, (hints.refcountTableClusters ?? 1) * cs);
  for (const v of views)
    if (v.l1Offset !== undefined) used.mark(v.l1Offset, Math.max(cs, (v.virtualSize / st.coverage) * 8));
  // What any L2-like cluster maps, placed or not (stale copies, VM state, lost tables): counted as
  // accounted for, so only data no table at all refers to is reported.
  const geo = { csizeShift: 62 - (st.clusterBits - 8), csizeMask: 2 ** (st.clusterBits - 8) - 1 } as Parameters<
    typeof decodeCompressed
  >[2];
  const tables = new Set<number>([...st.role].filter(([, r]) => r === 'l2').map(([o]) => o));
  for (const v of views) for (const p of v.l2.values()) tables.add(p.host);
  for (const o of tables) {
    const buf = await st.cache.get(o);
    for (let q = 0; q + st.step <= cs; q += st.step) {
      const hi = u32(buf, q);
      const lo = u32(buf, q + 4);
      const type = classifyL2(hi, lo, st.extendedL2, false);
      if (type === ClusterType.Compressed) {
        const d = decodeCompressed(hi, lo, geo);
        used.mark(d.offset, d.size);
      } else if (type !== ClusterType.Unallocated && type !== ClusterType.ZeroPlain) used.mark(l2Offset(hi, lo), cs);
    }
  }
  return { used, n };
}

/**
 * Marks every view with the live, unmapped data clusters (`unplacedData`). Needs refcounts that
 * survive and are not lazy (the dirty bit): without them a cluster nothing maps may be a free one.
 */
export async function markUnplacedData(
  st: ReconstructState,
  views: GuestView[],
  metadata: Map<number, string>,
  hasBacking: boolean,
): Promise<void> {
  const probe = st.probe;
  const { cs, fileSize } = st;
  if (!probe || st.hints.dirty || Math.ceil(fileSize / cs) / 8 > MAX_BITMAP) return;
  const { used, n } = await accountedClusters(st, views, metadata);
  const hosts: number[] = [];
  for (let c = 1; c < n; c++) {
    if (used.has(c)) continue;
    const rc = await probe.refcount(c);
    if (!rc) continue;
    // An unmapped cluster of zeros hides nothing, unless it covered data of a backing file.
    if (!hasBacking && isZero(await st.cache.get(c * cs), 0, cs)) continue;
    hosts.push(c * cs);
  }
  if (!hosts.length) return;
  const bytes = hosts.reduce((a, h) => a + Math.min(cs, fileSize - h), 0);
  for (const v of views) v.unplacedData = { clusters: hosts.length, bytes };
  st.warnings.push(
    `${hosts.length} data cluster(s) (${hosts.slice(0, 8).map(hx).join(', ')}${hosts.length > 8 ? ', …' : ''}) are live by their refcount but no table maps them: the L2 entries that placed them were lost, and where their data belongs is unknown (one of the unallocated ranges, reported as possibly lost); --lost-found copies the data out`,
  );
}

export const UNPLACED_DATA_REASON =
  'possibly lost: unallocated here, but live data clusters no table maps belong in one of the unallocated ranges (see the warnings; --lost-found copies them out)';

/** Is this L2 entry (standard or extended) entirely empty: unallocated, no zero flag, no subcluster bits? */
export function entryEmpty(l2: Uint8Array, j: number, step: number): boolean {
  for (let p = j * step; p < (j + 1) * step; p += 4) if (u32(l2, p) !== 0) return false;
  return true;
}
