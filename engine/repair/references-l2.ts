// The repair's rules for L2 entries: which data pointers are valid and counted, what QEMU would
// count for the invalid ones, and whose referrers are remembered.
import * as C from '../format/constants.js';
import { ClusterType } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { L2Entry } from '../image/traversal/index.js';
import type { RefCounter } from './references-counter.js';
import type { BadEntry } from './references.js';

export function l2EntryVisitor(img: Qcow2Image, k: RefCounter): (e: L2Entry) => void {
  const ext = img.hasExternalData;
  const extendedL2 = img.geo.extendedL2;
  const step = img.geo.l2EntrySize;
  return (e) => {
    if (e.repeat) return repeated(k, e, ext, step);
    const active = e.layer.snapshotId === undefined;
    const entry = e.table + e.index * step;
    // Built only when a problem is found (this runs once per guest cluster).
    const base = (): Omit<BadEntry, 'kind' | 'qemuClusters'> => ({
      entry,
      hi: e.hi,
      lo: e.lo,
      active,
      table: e.table,
      index: e.index,
      ...(e.layer.snapshotId !== undefined ? { snapshotId: e.layer.snapshotId } : {}),
    });
    const type = e.type;
    if (
      extendedL2 &&
      ((type === ClusterType.Compressed && (e.bitmapAlloc | e.bitmapZero) !== 0) ||
        (type === ClusterType.Unallocated && e.bitmapAlloc !== 0) ||
        (type === ClusterType.Normal && (e.bitmapAlloc & e.bitmapZero) !== 0))
    ) {
      // Subcluster bitmap damage: QEMU cannot repair it and neither do we (no way to know the intended bits).
      k.flag({ kind: 'l2-unsupported', ...base(), qemuClusters: [] });
      if (type !== ClusterType.Normal) return;
    }
    if (type === ClusterType.Compressed) {
      if (e.hi & C.OFLAG_COPIED_HI) k.flag({ kind: 'l2-compressed-copied', ...base(), qemuClusters: [] });
      if (!ext && !k.count(e.offset, e.length))
        k.flag({ kind: 'l2-compressed-beyond-eof', ...base(), qemuClusters: [] });
      return;
    }
    if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) return;
    if (e.reserved) k.flag({ kind: 'l2-reserved-bits', ...base(), qemuClusters: [] });
    const off = e.offset;
    const c = Math.floor(off / k.cs);
    if (off % k.cs !== 0) {
      const q = off < k.fileSize ? [c, c + 1] : [];
      const noData = type === ClusterType.ZeroAlloc || (extendedL2 && e.bitmapAlloc === 0);
      k.flag({ kind: noData ? 'l2-prealloc-unaligned' : 'l2-data-unaligned', ...base(), qemuClusters: q });
      return;
    }
    if (ext) return;
    if (!k.count(off, k.cs)) {
      k.flag({ kind: 'l2-beyond-eof', ...base(), qemuClusters: [] });
      return;
    }
    if (k.pass === 1 ? k.isMeta(c) : k.shared[c] === 1)
      k.track(c, { entry, kind: active ? 'l2' : 'snap-l2', guest: e.guestOffset });
  };
}

/**
 * A further walk of an L2 table shared by several L1 entries: QEMU counts its data once per L1
 * reference, so each further reference adds its counts (no flags: the first walk raised them).
 */
function repeated(k: RefCounter, e: L2Entry, ext: boolean, step: number): void {
  if (ext) return;
  if (e.type === ClusterType.Compressed) {
    if (k.pass === 1) k.count(e.offset, e.length);
    return;
  }
  if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) return;
  const off = e.offset;
  if (off % k.cs !== 0 || off >= k.fileSize) return;
  const x = off / k.cs;
  if (k.pass === 1) k.refs[x]!++;
  if (!k.wanted(x)) return;
  const active = e.layer.snapshotId === undefined;
  k.track(x, { entry: e.table + e.index * step, kind: active ? 'l2' : 'snap-l2', guest: e.guestOffset });
}
