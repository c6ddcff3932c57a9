// The repair's rules for L2 entries: which data pointers are valid and counted, what QEMU would
// count for the invalid ones, and whose referrers are remembered.
import * as C from '../format/constants.js';
import { ClusterType } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { L2Entry, TableRead } from '../image/traversal/index.js';
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
      else if (!ext && k.pass === 1) {
        // A stream inside the header or another table is no compressed data: a garbage descriptor
        // (a flipped compressed bit on an empty entry points at offset 0). The planner decodes it to be sure.
        const touched = streamInMetadata(k, e.offset, e.length);
        if (touched.length) k.flag({ kind: 'l2-compressed-into-metadata', ...base(), qemuClusters: touched });
      }
      return;
    }
    // QEMU's check judges reserved bits on every standard entry, an unallocated one included.
    if (e.reserved) k.flag({ kind: 'l2-reserved-bits', ...base(), qemuClusters: [] });
    if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) return;
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

/** The clusters of [off, off+len) when one of them holds metadata (header, L1, refcount structure, snapshot table). */
function streamInMetadata(k: RefCounter, off: number, len: number): number[] {
  const first = Math.floor(off / k.cs);
  const last = Math.floor((off + Math.max(len, 1) - 1) / k.cs);
  const out: number[] = [];
  let meta = false;
  for (let c = first; c <= last; c++) {
    out.push(c);
    if (k.isMeta(c)) meta = true;
  }
  return meta ? out : [];
}

/**
 * The common L2 table, read from its bytes in tight loops: when every entry is empty, unallocated,
 * or a valid aligned pointer inside the file to a cluster that is neither metadata nor (second
 * pass) shared, each data cluster is counted here and true is returned — exactly what the entry
 * visitor would do for such entries. Anything else: false, nothing counted, the entry visitor
 * takes the table.
 */
export function l2TableVisitor(img: Qcow2Image, k: RefCounter): (t: TableRead, bytes: Uint8Array) => boolean {
  const plainWalk = !img.geo.extendedL2 && !img.hasExternalData;
  const n = img.geo.l2Entries;
  const bits = img.geo.clusterBits;
  const hosts = k.hostClusters;
  const clusters = new Float64Array(plainWalk ? n : 0);
  return (t, bytes) => {
    if (!plainWalk || t.repeat || !plainClusters(bytes, n, bits, hosts, clusters)) return false;
    const pass1 = k.pass === 1;
    for (let j = 0; j < n; j++) {
      const c = clusters[j]!;
      if (c !== 0 && (pass1 ? k.isMeta(c) : k.shared[c] === 1)) return false;
    }
    if (!pass1) return true;
    let refs = k.refs;
    for (let j = 0; j < n; j++) {
      const c = clusters[j]!;
      if (c === 0) continue;
      const v = refs[c]! + 1;
      if (v > k.limit) {
        k.widen();
        refs = k.refs;
      }
      refs[c] = v;
    }
    return true;
  };
}

const COMPRESSED = C.OFLAG_COMPRESSED_HI;
const OFFSET_HI = C.L2E_OFFSET_MASK_HI;
const OFFSET_LO = C.L2E_OFFSET_MASK_LO;
const RESERVED_HI = C.L2E_STD_RESERVED_MASK_HI;
const RESERVED_LO = C.L2E_STD_RESERVED_MASK_LO;

/**
 * The host cluster each standard L2 entry maps into `out` (0 where it maps nothing: empty,
 * unallocated, plain zero). False as soon as one entry is anything the entry visitor must judge
 * (compressed, reserved bits, unaligned, past the end of the file).
 */
function plainClusters(t: Uint8Array, n: number, bits: number, hosts: number, out: Float64Array): boolean {
  const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
  // Integer arithmetic: clusters are at most 2 MiB, so alignment shows in the low word alone, and
  // an aligned offset lies inside the file exactly when its cluster is below the file's count.
  const align = (1 << bits) - 1;
  const hiClusters = 2 ** (32 - bits);
  for (let j = 0; j < n; j++) {
    const hi = dv.getUint32(8 * j);
    const lo = dv.getUint32(8 * j + 4);
    let c = 0;
    if ((hi | lo) !== 0) {
      if (hi & COMPRESSED || (hi & RESERVED_HI) !== 0 || (lo & RESERVED_LO) !== 0) return false;
      const offHi = hi & OFFSET_HI;
      const offLo = (lo & OFFSET_LO) >>> 0;
      if ((offHi | offLo) !== 0) {
        if ((offLo & align) !== 0) return false;
        c = offHi * hiClusters + (offLo >>> bits);
        if (c >= hosts) return false;
      }
    }
    out[j] = c;
  }
  return true;
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
  if (k.pass === 1) k.add(x);
  if (!k.wanted(x)) return;
  const active = e.layer.snapshotId === undefined;
  k.track(x, { entry: e.table + e.index * step, kind: active ? 'l2' : 'snap-l2', guest: e.guestOffset });
}
