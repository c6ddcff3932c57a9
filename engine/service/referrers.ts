/**
 * Who references one host cluster, found by walking the metadata as QEMU's check counts it: the
 * header's structures, refcount table entries, each L1 (active and every snapshot's) and the L2
 * tables under each L1 — an L2 table shared by the active state and a snapshot is walked once per
 * L1, so its data clusters get one reference per L1, as their refcount expects. Used when the
 * checker has no answer of its own; bounded in bytes read so a click never turns into a long job.
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import type { Referrer } from '../check/types.js';
import type { CancelToken } from '../base/task-control.js';

export interface ReferrerSearch {
  referrers: Referrer[];
  /** False when the byte budget ran out before every table was read. */
  complete: boolean;
}

interface L1Source {
  offset: number;
  entries: Uint8Array;
  snapshotId?: string;
}

/** Default budget: enough for images of a few hundred GiB of 64 KiB clusters. */
export const DEFAULT_REFERRER_BUDGET = 256 * 1024 * 1024;

export async function findReferrers(
  image: Qcow2Image,
  cluster: number,
  opts: { budget?: number; cancel?: CancelToken } = {},
): Promise<ReferrerSearch> {
  const cs = image.clusterSize;
  const g = image.geo;
  const h = image.header;
  const lo = cluster * cs;
  const hi = lo + cs;
  const inside = (off: number, len: number): boolean => off < hi && off + Math.max(1, len) > lo;
  const out: Referrer[] = [];
  let budget = opts.budget ?? DEFAULT_REFERRER_BUDGET;
  let complete = true;

  if (cluster === 0) out.push({ kind: 'header' });
  if (h.l1Size && inside(h.l1TableOffset, h.l1Size * 8)) out.push({ kind: 'header' });
  if (h.refcountTableClusters && inside(h.refcountTableOffset, h.refcountTableClusters * cs))
    out.push({ kind: 'header' });
  if (h.bitmaps?.directorySize && inside(h.bitmaps.directoryOffset, h.bitmaps.directorySize))
    out.push({ kind: 'header' });
  if (h.crypto && inside(h.crypto.offset, h.crypto.length)) out.push({ kind: 'header' });

  // Refcount table entries → refcount blocks.
  for (let i = 0; i + 8 <= image.reftable.length; i += 8) {
    const off = u32(image.reftable, i) * 0x1_0000_0000 + ((u32(image.reftable, i + 4) & C.REFT_OFFSET_MASK_LO) >>> 0);
    if (off && inside(off, cs)) out.push({ kind: 'refcount-table', table: h.refcountTableOffset, index: i / 8 });
  }

  const l1s: L1Source[] = [{ offset: h.l1TableOffset, entries: image.l1 }];
  let snapTableLen = 0;
  try {
    const { entries, byteLength } = await image.readSnapshots();
    snapTableLen = byteLength;
    for (const s of entries) {
      if (s.l1Size && inside(s.l1TableOffset, s.l1Size * 8))
        out.push({ kind: 'snapshot-table', table: h.snapshotsOffset, snapshotId: s.id });
      const bytes = Math.min(s.l1Size, C.QCOW_MAX_L1_SIZE / 8) * 8;
      if (bytes > budget || s.l1TableOffset % cs !== 0 || s.l1TableOffset >= image.fileSize) {
        if (bytes > budget) complete = false;
        continue;
      }
      budget -= bytes;
      l1s.push({
        offset: s.l1TableOffset,
        entries: await readPadded(image.io, s.l1TableOffset, bytes),
        snapshotId: s.id,
      });
    }
  } catch {
    complete = false;
  }
  if (h.nbSnapshots && snapTableLen && inside(h.snapshotsOffset, snapTableLen)) out.push({ kind: 'header' });

  const l2Cache = new Map<number, Uint8Array>();
  for (const l1 of l1s) {
    for (let i = 0; i + 8 <= l1.entries.length; i += 8) {
      opts.cancel?.throwIfCancelled();
      const l2 = l1Offset(u32(l1.entries, i), u32(l1.entries, i + 4));
      if (l2 === 0) continue;
      const ref = (kind: string, table: number, index: number, guestOffset: number): Referrer => {
        const r: Referrer = { kind, table, index, guestOffset };
        if (l1.snapshotId !== undefined) r.snapshotId = l1.snapshotId;
        return r;
      };
      if (inside(l2, cs))
        out.push(ref(l1.snapshotId === undefined ? 'l1' : 'snapshot-l1', l1.offset, i / 8, (i / 8) * g.l1Coverage));
      if (l2 % cs !== 0 || l2 >= image.fileSize) continue;
      let table = l2Cache.get(l2);
      if (!table) {
        if (budget < cs) {
          complete = false;
          continue;
        }
        budget -= cs;
        table = await readPadded(image.io, l2, cs);
        l2Cache.set(l2, table);
      }
      for (let j = 0; j < g.l2Entries; j++) {
        const eh = u32(table, j * g.l2EntrySize);
        const el = u32(table, j * g.l2EntrySize + 4);
        if (eh === 0 && el === 0) continue;
        const type = classifyL2(eh, el, g.extendedL2, image.hasExternalData);
        let off = 0;
        let len = cs;
        if (type === ClusterType.Compressed) {
          const d = decodeCompressed(eh, el, g);
          off = d.offset;
          len = d.size;
        } else if (type === ClusterType.Normal || type === ClusterType.ZeroAlloc) {
          if (image.hasExternalData) continue;
          off = l2Offset(eh, el);
        } else continue;
        if (inside(off, len)) out.push(ref('l2', l2, j, (i / 8) * g.l1Coverage + j * cs));
      }
    }
  }
  return { referrers: out, complete };
}
