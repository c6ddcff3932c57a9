// Who refers to a few host clusters: one traversal, every reference whose range touches one of them
// counted (exactly, whatever the number), the first referrers listed, all of them summed up by kind,
// and the role the references give the cluster. For the app's cluster inspector and the checker's
// findings. Optionally bounded in bytes of tables read, so a click never turns into a long job.
import { CancelledError } from '../../base/errors.js';
import { CancelToken } from '../../base/task-control.js';
import { HostRole } from '../../contract/roles.js';
import type { Referrer } from '../../contract/findings.js';
import { ClusterType } from '../../format/l2-entry.js';
import type { TraversalSource } from './source.js';
import { traverse } from './traverse.js';
import type { Holder, L2Entry, Reference } from './types.js';

export interface ClusterReferrers {
  /** References the metadata holds to the cluster (exact when the search completed). */
  references: number;
  /** The first referrers, in traversal order. */
  referrers: Referrer[];
  /** More referrers exist than listed. */
  truncated: boolean;
  /** References per referrer kind. */
  byKind: Map<string, number>;
  role: number;
}

export interface ReferrerSearchOptions {
  /** Referrers listed per cluster (the count is always complete). */
  maxPerCluster?: number;
  cancel?: CancelToken;
  /** Bytes of tables the search may read before it stops (incomplete). */
  budget?: number;
}

export interface ReferrerSearchResult {
  found: Map<number, ClusterReferrers>;
  /** False when the byte budget ran out before every table was read. */
  complete: boolean;
}

/** The app's and the findings' referrer: who holds the pointer, where. */
export function toReferrer(h: Holder): Referrer {
  const r: Referrer = { kind: h.kind };
  if (h.table !== undefined) r.table = h.table;
  if (h.index !== undefined) r.index = h.index;
  if ((h.kind === 'l2' || h.kind === 'snapshot-l2') && h.guestOffset !== undefined) r.guestOffset = h.guestOffset;
  if (h.snapshotId !== undefined) r.snapshotId = h.snapshotId;
  return r;
}

const TARGET_ROLES: Partial<Record<Reference['target'], number>> = {
  header: HostRole.Header,
  l1: HostRole.L1,
  'snapshot-l1': HostRole.SnapshotL1,
  'refcount-table': HostRole.RefcountTable,
  'refcount-block': HostRole.RefcountBlock,
  'snapshot-table': HostRole.SnapshotTable,
  'bitmap-directory': HostRole.BitmapDirectory,
  'bitmap-table': HostRole.BitmapTable,
  'bitmap-data': HostRole.BitmapData,
  'crypto-header': HostRole.CryptoHeader,
};

/** A role met again under another name makes the cluster corrupt, except active and snapshot views of one thing. */
function mergeRole(was: number, as: number): number {
  if (was === HostRole.Free || was === as) return as;
  if (was === HostRole.L2 && as === HostRole.SnapshotL2) return was;
  if (was === HostRole.Data && as === HostRole.SnapshotData) return was;
  return HostRole.Corrupt;
}

export async function findClusterReferrers(
  src: TraversalSource,
  clusters: ReadonlySet<number>,
  opts: ReferrerSearchOptions = {},
): Promise<ReferrerSearchResult> {
  const cs = src.geo.clusterSize;
  const max = opts.maxPerCluster ?? 1000;
  const found = new Map<number, ClusterReferrers>();
  for (const c of clusters)
    found.set(c, { references: 0, referrers: [], truncated: false, byKind: new Map(), role: HostRole.Free });
  const hitOne = (c: number, from: Holder, as: number): void => {
    const e = found.get(c);
    if (!e) return;
    e.references++;
    e.role = mergeRole(e.role, as);
    e.byKind.set(from.kind, (e.byKind.get(from.kind) ?? 0) + 1);
    if (e.referrers.length < max) e.referrers.push(toReferrer(from));
    else e.truncated = true;
  };
  const hit = (off: number, len: number, from: Holder, as: number): void => {
    if (len <= 0 || !Number.isSafeInteger(off + len)) return;
    const first = Math.floor(off / cs);
    const last = Math.floor((off + len - 1) / cs);
    if (last - first < 64) {
      for (let c = first; c <= last; c++) if (found.has(c)) hitOne(c, from, as);
    } else for (const c of clusters) if (c >= first && c <= last) hitOne(c, from, as);
  };
  const budgetToken = new CancelToken();
  opts.cancel?.onCancel(() => budgetToken.cancel());
  let budget = opts.budget ?? Number.POSITIVE_INFINITY;
  try {
    await traverse(
      src,
      {
        reference: (r) => onReference(r, hit, cs),
        l2Entry: (e) => onL2Entry(e, hit, found, cs, src.externalData),
        table: (_t, bytes) => {
          budget -= bytes.length;
          if (budget < 0) budgetToken.cancel();
        },
      },
      { sharedL2: 'repeat', cancel: budgetToken },
    );
  } catch (e) {
    if (!(e instanceof CancelledError) || opts.cancel?.isCancelled) throw e;
    return { found, complete: false };
  }
  return { found, complete: true };
}

type Hit = (off: number, len: number, from: Holder, as: number) => void;

function onReference(r: Reference, hit: Hit, cs: number): boolean {
  if (r.target === 'l2') {
    hit(r.offset, cs, r.from, r.from.kind === 'l1' ? HostRole.L2 : HostRole.SnapshotL2);
    return true;
  }
  // QEMU's check skips refcount blocks with reserved bits or an unaligned offset.
  if (r.target === 'refcount-block' && (r.reserved || r.problem === 'unaligned')) return true;
  const role = TARGET_ROLES[r.target];
  if (role !== undefined) hit(r.offset, r.length, r.from, role);
  return true;
}

function onL2Entry(e: L2Entry, hit: Hit, found: Map<number, unknown>, cs: number, externalData: boolean): void {
  if (externalData || e.length === 0) return;
  const first = Math.floor(e.offset / cs);
  const last = Math.floor((e.offset + e.length - 1) / cs);
  // The common case: not a cluster asked about.
  if (last - first < 2 && !found.has(first) && !found.has(last)) return;
  const active = e.layer.snapshotId === undefined;
  const from: Holder = {
    kind: active ? 'l2' : 'snapshot-l2',
    table: e.table,
    index: e.index,
    guestOffset: e.guestOffset,
  };
  if (!active) from.snapshotId = e.layer.snapshotId!;
  const role =
    e.type === ClusterType.Compressed
      ? HostRole.Compressed
      : e.type === ClusterType.ZeroAlloc
        ? HostRole.ZeroAlloc
        : active
          ? HostRole.Data
          : HostRole.SnapshotData;
  hit(e.offset, e.length, from, role);
}
