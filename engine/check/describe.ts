// "What is this host cluster?" for the app's hover/click on the cluster map: its role, its on-disk
// refcount, how many references the metadata holds to it, and every referrer (which table and entry,
// guest offset, snapshot). Reads the metadata (never writes); pass the analysis when there is one.
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import type { Analysis } from './analyze.js';
import { bitmapsActive, loadBitmapDirectory, loadBitmapTable } from './bitmaps.js';
import { pipeline, BufferPool } from './batch-reader.js';
import { LOOKUP_FAILED, RefcountLookup } from './refcount-lookup.js';
import { HOST_ROLE_NAMES, HostRole } from '../contract/roles.js';
import { precheckSnapshotTable } from './snapshot-table.js';
import type { Referrer } from './types.js';

export interface HostClusterInfo {
  cluster: number;
  offset: number;
  role: number;
  roleName: string;
  /** On-disk refcount; undefined when it cannot be read (misplaced refcount block). */
  refcount?: number;
  /** References the metadata holds to this cluster. */
  references: number;
  referrers: Referrer[];
  /** More referrers exist than listed. */
  referrersTruncated: boolean;
  beyondEof: boolean;
}

const MAX_REFERRERS = 1000;
const TWO32 = 0x1_0000_0000;

/** What the metadata says about one cluster: references, referrers and the role they give it. */
export interface ClusterReferrers {
  references: number;
  referrers: Referrer[];
  truncated: boolean;
  role: number;
}

/**
 * Walk all metadata once (every table QEMU's check counts) and collect, for each cluster of
 * `clusters`, who references it. Used for the app's hover/click and to name the referrers of
 * the clusters a check found in trouble.
 */
export async function findReferrers(
  image: Qcow2Image,
  clusters: ReadonlySet<number>,
  maxPerCluster = MAX_REFERRERS,
): Promise<Map<number, ClusterReferrers>> {
  const cs = image.clusterSize;
  const out = new Map<number, ClusterReferrers>();
  for (const c of clusters) out.set(c, { references: 0, referrers: [], truncated: false, role: HostRole.Free });
  const hitOne = (c: number, r: Referrer, as: number): void => {
    const e = out.get(c);
    if (!e) return;
    e.references++;
    if (e.role === HostRole.Free) e.role = as;
    else if (
      e.role !== as &&
      !(e.role === HostRole.L2 && as === HostRole.SnapshotL2) &&
      !(e.role === HostRole.Data && as === HostRole.SnapshotData)
    )
      e.role = HostRole.Corrupt;
    if (e.referrers.length < maxPerCluster) e.referrers.push(r);
    else e.truncated = true;
  };
  /** Count [off, off+len) against every target cluster it touches (as QEMU counts ranges). */
  const hit = (off: number, len: number, r: Referrer, as: number): void => {
    if (len <= 0 || !Number.isFinite(off)) return;
    const first = Math.floor(off / cs);
    const last = Math.floor((off + len - 1) / cs);
    // Past 2^53 `c++` stops advancing (a hostile refcount-table entry can point near 2^64): walk
    // the target set instead of the range there.
    if (last - first < 64 && Number.isSafeInteger(last + 1)) {
      for (let c = first; c <= last; c++) if (out.has(c)) hitOne(c, r, as);
    } else {
      for (const c of clusters) if (c >= first && c <= last) hitOne(c, r, as);
    }
  };
  const h = image.header;

  hit(0, cs, { kind: 'header' }, HostRole.Header);
  const zeros = new Uint8Array(cs);
  const pools: [BufferPool, BufferPool] = [new BufferPool(8 << 20), new BufferPool(8 << 20)];
  const walkL1 = async (l1: Uint8Array, l1Offset: number, snapshotId: string | undefined): Promise<void> => {
    const active = snapshotId === undefined;
    const l1Ref: Referrer = { kind: active ? 'header' : 'snapshot-table' };
    if (snapshotId !== undefined) l1Ref.snapshotId = snapshotId;
    hit(l1Offset, l1.length, l1Ref, active ? HostRole.L1 : HostRole.SnapshotL1);
    const n = l1.length / 8;
    let i = 0;
    const perBatch = Math.max(1, Math.floor((8 << 20) / cs));
    const next = (): { idx: number[]; offsets: number[] } | undefined => {
      const idx: number[] = [];
      const offsets: number[] = [];
      for (; i < n && idx.length < perBatch; i++) {
        const hi = u32(l1, 8 * i);
        const lo = u32(l1, 8 * i + 4);
        if (hi === 0 && lo === 0) continue;
        idx.push(i);
        offsets.push((hi & C.L1E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0));
      }
      return idx.length ? { idx, offsets } : undefined;
    };
    const geo = image.geo;
    await pipeline(image.io, image.fileSize, cs, zeros, pools, next, ({ idx, offsets }, tables) => {
      for (let b = 0; b < idx.length; b++) {
        const l1Index = idx[b]!;
        const l2Off = offsets[b]!;
        const r1: Referrer = { kind: active ? 'l1' : 'snapshot-l1', table: l1Offset, index: l1Index };
        if (snapshotId !== undefined) r1.snapshotId = snapshotId;
        hit(l2Off, cs, r1, active ? HostRole.L2 : HostRole.SnapshotL2);
        const t = tables.get(l2Off)!;
        for (let e = 0; e < geo.l2Entries; e++) {
          const p = e * geo.l2EntrySize;
          const hi = u32(t, p);
          const lo = u32(t, p + 4);
          if ((hi | lo) === 0) continue;
          let off: number;
          let len = cs;
          let as: number;
          if (hi & C.OFLAG_COMPRESSED_HI) {
            if (image.hasExternalData) continue;
            const hiBits = geo.csizeShift - 32;
            off = (hi & (2 ** hiBits - 1)) * TWO32 + lo;
            len = ((Math.floor((hi & 0x3fffffff) / 2 ** hiBits) & geo.csizeMask) + 1) * C.SECTOR_SIZE - (lo & 511);
            as = HostRole.Compressed;
          } else {
            off = (hi & C.L2E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
            if (off === 0 || image.hasExternalData) continue;
            as =
              !geo.extendedL2 && (lo & C.OFLAG_ZERO_LO) !== 0
                ? HostRole.ZeroAlloc
                : active
                  ? HostRole.Data
                  : HostRole.SnapshotData;
          }
          const first = Math.floor(off / cs);
          const last = Math.floor((off + len - 1) / cs);
          if (last - first < 2 && !out.has(first) && !out.has(last)) continue; // the common case: not a target
          const r: Referrer = {
            kind: active ? 'l2' : 'snapshot-l2',
            table: l2Off,
            index: e,
            guestOffset: (l1Index * geo.l2Entries + e) * cs,
          };
          if (snapshotId !== undefined) r.snapshotId = snapshotId;
          hit(off, len, r, as);
        }
      }
    });
  };

  await walkL1(image.l1, h.l1TableOffset, undefined);
  const header = await readPadded(image.io, 0, 72);
  const snaps = await precheckSnapshotTable(image.io, image.fileSize, header, cs, h.version);
  for (const sn of snaps.snapshots) {
    if (sn.l1TableOffset % cs !== 0 || sn.l1Size > C.QCOW_MAX_L1_SIZE / 8) continue;
    const l1 =
      sn.l1TableOffset >= image.fileSize
        ? new Uint8Array(sn.l1Size * 8)
        : await readPadded(image.io, sn.l1TableOffset, sn.l1Size * 8);
    await walkL1(l1, sn.l1TableOffset, sn.id);
  }
  hit(h.snapshotsOffset, snaps.tableSize, { kind: 'snapshot-table' }, HostRole.SnapshotTable);
  hit(h.refcountTableOffset, h.refcountTableClusters * cs, { kind: 'refcount-table' }, HostRole.RefcountTable);
  if (h.crypto) hit(h.crypto.offset, h.crypto.length, { kind: 'crypto-header' }, HostRole.CryptoHeader);
  if (bitmapsActive(image)) {
    try {
      const dir = await loadBitmapDirectory(image);
      hit(dir.offset, dir.size, { kind: 'bitmap-directory' }, HostRole.BitmapDirectory);
      for (const bm of dir.bitmaps) {
        hit(
          bm.tableOffset,
          bm.tableSize * 8,
          { kind: 'bitmap-directory', table: bm.entryOffset },
          HostRole.BitmapTable,
        );
        const t = await loadBitmapTable(image, bm).catch(() => undefined);
        if (!t) continue;
        for (let i = 0; i < bm.tableSize; i++) {
          const off =
            (u32(t, 8 * i) & C.BME_OFFSET_MASK_HI) * TWO32 + ((u32(t, 8 * i + 4) & C.BME_OFFSET_MASK_LO) >>> 0);
          if (off !== 0) hit(off, cs, { kind: 'bitmap-table', table: bm.tableOffset, index: i }, HostRole.BitmapData);
        }
      }
    } catch {
      // A broken directory: its clusters are reported by the check itself.
    }
  }
  const rt = image.reftable;
  for (let i = 0; i < rt.length / 8; i++) {
    const hi = u32(rt, 8 * i);
    const lo = u32(rt, 8 * i + 4);
    if ((lo & C.REFT_RESERVED_MASK_LO) !== 0) continue;
    const off = hi * TWO32 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
    if (off !== 0 && off % cs === 0)
      hit(off, cs, { kind: 'refcount-table', table: h.refcountTableOffset, index: i }, HostRole.RefcountBlock);
  }
  return out;
}

export async function describeHostCluster(
  image: Qcow2Image,
  cluster: number,
  analysis?: Analysis,
): Promise<HostClusterInfo> {
  const cs = image.clusterSize;
  const start = cluster * cs;
  const found = (await findReferrers(image, new Set([cluster]))).get(cluster)!;
  let role = found.role;
  const { references, referrers, truncated } = found;
  const rc = await new RefcountLookup(image).get(cluster);
  const beyondEof = start >= image.fileSize;
  if (analysis?.roleMap && cluster < analysis.roleMap.length) role = analysis.roleMap[cluster]!;
  else if (role === HostRole.Free && rc !== LOOKUP_FAILED && rc > 0)
    role = beyondEof ? HostRole.BeyondEof : HostRole.Leaked;
  else if (role === HostRole.Free && beyondEof) role = HostRole.BeyondEof;
  const info: HostClusterInfo = {
    cluster,
    offset: start,
    role,
    roleName: HOST_ROLE_NAMES[role] ?? 'unknown',
    references,
    referrers,
    referrersTruncated: truncated,
    beyondEof,
  };
  if (rc !== LOOKUP_FAILED) info.refcount = rc;
  return info;
}
