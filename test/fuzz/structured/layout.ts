// The structure of a valid image, decoded once, as the targets structure-aware mutations aim at:
// every pointer (with the flag bits around its offset, so a redirect keeps them), every count and
// size (with the limits QEMU enforces), every compressed descriptor, the snapshot and bitmap
// directories entry by entry, and the clusters that hold metadata (where pointers get redirected).
import * as C from '../../../engine/format/constants.js';
import { u16, u32, u64 } from '../../../engine/format/bytes.js';
import { decodeHeader } from '../../../engine/format/header.js';

/** How the 8-byte word at a pointer holds its offset. */
export type PointerKind = 'plain' | 'l1' | 'l2' | 'bitmap-table';

export interface Pointer {
  name: string;
  at: number;
  kind: PointerKind;
}

export interface Count {
  name: string;
  at: number;
  size: 1 | 2 | 4 | 8;
  /** Values at QEMU's limits and just past them, tried first. */
  limits: bigint[];
}

export interface Layout {
  clusterBits: number;
  clusterSize: number;
  fileSize: number;
  extendedL2: boolean;
  pointers: Pointer[];
  counts: Count[];
  /** Offsets of L2 entries (allocated or not) where a compressed descriptor can be written. */
  l2Entries: number[];
  /** Offsets of L2 entries that already hold a compressed descriptor. */
  compressed: number[];
  /** Host offsets of clusters holding metadata: redirect destinations. */
  metadata: number[];
  /** Host offsets of clusters holding guest data. */
  data: number[];
  /** Start of every snapshot table entry and bitmap directory entry (whole-entry edits). */
  snapshotEntries: number[];
  bitmapEntries: number[];
  /** Offset of each refcount block (per-entry edits). */
  refblocks: number[];
  refcountBits: number;
}

const l1Target = (img: Uint8Array, at: number): number =>
  (u32(img, at) & C.L1E_OFFSET_MASK_HI) * 2 ** 32 + (u32(img, at + 4) & C.L1E_OFFSET_MASK_LO);

/** Decode the structures of `img` (a valid image made by qemu-img). */
export function layoutOf(img: Uint8Array): Layout {
  const h = decodeHeader(img.subarray(0, Math.min(img.length, 2 * 1024 * 1024)));
  const cs = 2 ** h.clusterBits;
  const ext = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  const l2es = ext ? 16 : 8;
  const L: Layout = {
    clusterBits: h.clusterBits,
    clusterSize: cs,
    fileSize: img.length,
    extendedL2: ext,
    pointers: [],
    counts: [],
    l2Entries: [],
    compressed: [],
    metadata: [0],
    data: [],
    snapshotEntries: [],
    bitmapEntries: [],
    refblocks: [],
    refcountBits: 2 ** h.refcountOrder,
  };
  const inFile = (o: number, n = 8): boolean => o >= 0 && o + n <= img.length;
  const ptr = (name: string, at: number, kind: PointerKind): void => {
    if (inFile(at)) L.pointers.push({ name, at, kind });
  };
  const count = (name: string, at: number, size: Count['size'], limits: Array<number | bigint>): void => {
    if (inFile(at, size)) L.counts.push({ name, at, size, limits: limits.map((v) => BigInt(v)) });
  };
  const meta = (o: number): void => {
    if (o > 0 && o < img.length) L.metadata.push(Math.floor(o / cs) * cs);
  };
  const H = C.HDR;
  ptr('header.l1_table_offset', H.l1TableOffset, 'plain');
  ptr('header.refcount_table_offset', H.refcountTableOffset, 'plain');
  ptr('header.snapshots_offset', H.snapshotsOffset, 'plain');
  ptr('header.backing_file_offset', H.backingFileOffset, 'plain');
  const l1Max = C.QCOW_MAX_L1_SIZE / 8;
  count('header.l1_size', H.l1Size, 4, [0, 1, h.l1Size + 1, l1Max, l1Max + 1, 0xffffffff]);
  const rtMax = C.QCOW_MAX_REFTABLE_SIZE / cs;
  count('header.refcount_table_clusters', H.refcountTableClusters, 4, [0, 1, rtMax, rtMax + 1, 0xffffffff]);
  count('header.nb_snapshots', H.nbSnapshots, 4, [0, h.nbSnapshots + 1, C.QCOW_MAX_SNAPSHOTS, 0xffffffff]);
  count('header.size', H.size, 8, [0, 1, 512, 2n ** 55n, 2n ** 63n - 1n, 2n ** 64n - 1n]);
  count('header.cluster_bits', H.clusterBits, 4, [8, 9, 21, 22, 31]);
  count('header.backing_file_size', H.backingFileSize, 4, [0, 1, 1023, 1024, 0xffffffff]);
  if (h.version === 3) {
    count('header.refcount_order', H.refcountOrder, 4, [0, 6, 7]);
    count('header.header_length', H.headerLength, 4, [0, 104, 112, cs, cs + 8, 0xffffffff]);
    count('header.incompatible_features', H.incompatibleFeatures, 8, [0, 1, 2, 4, 8, 16, 32, 0x1f]);
  }
  // Active L1, its L2 tables (every entry up to a cap), compressed descriptors.
  const l1s: Array<{ name: string; offset: number; size: number }> = [
    { name: 'l1', offset: h.l1TableOffset, size: h.l1Size },
  ];
  // Snapshot table: fixed fields of each entry and each snapshot's L1 table.
  let sp = h.snapshotsOffset;
  for (let i = 0; i < h.nbSnapshots && inFile(sp, 40); i++) {
    meta(sp);
    L.snapshotEntries.push(sp);
    ptr(`snapshot[${i}].l1_table_offset`, sp, 'plain');
    const sl1Size = u32(img, sp + 8);
    count(`snapshot[${i}].l1_size`, sp + 8, 4, [0, 1, sl1Size + 1, l1Max, l1Max + 1, 0xffffffff]);
    count(`snapshot[${i}].id_size`, sp + 12, 2, [0, 1, 0xffff]);
    count(`snapshot[${i}].name_size`, sp + 14, 2, [0, 1, 0xffff]);
    const xd = C.QCOW_MAX_SNAPSHOT_EXTRA_DATA;
    count(`snapshot[${i}].extra_data_size`, sp + 36, 4, [0, 8, 15, 16, 24, xd, xd + 1, 0xffffffff]);
    count(`snapshot[${i}].extra.disk_size`, sp + 48, 8, [0, 1, 2n ** 63n, 2n ** 64n - 1n]);
    l1s.push({ name: `snapshot[${i}].l1`, offset: u64(img, sp), size: sl1Size });
    sp += Math.ceil((40 + u32(img, sp + 36) + u16(img, sp + 12) + u16(img, sp + 14)) / 8) * 8;
  }
  const seenL2 = new Set<number>();
  for (const t of l1s) {
    meta(t.offset);
    for (let i = 0; i < Math.min(t.size, 64) && inFile(t.offset + i * 8); i++) {
      ptr(`${t.name}[${i}]`, t.offset + i * 8, 'l1');
      const l2 = l1Target(img, t.offset + i * 8);
      if (l2 === 0 || !inFile(l2, cs) || seenL2.has(l2)) continue;
      seenL2.add(l2);
      meta(l2);
      for (let j = 0; j < cs / l2es && j < 512; j++) {
        const at = l2 + j * l2es;
        L.l2Entries.push(at);
        const hi = u32(img, at);
        const lo = u32(img, at + 4);
        if (hi === 0 && lo === 0 && !ext) continue;
        if (hi & C.OFLAG_COMPRESSED_HI) L.compressed.push(at);
        else {
          ptr(`${t.name}[${i}].l2[${j}]`, at, 'l2');
          const d = (hi & C.L2E_OFFSET_MASK_HI) * 2 ** 32 + (lo & C.L2E_OFFSET_MASK_LO);
          if (d > 0 && d < img.length) L.data.push(d);
        }
        if (ext)
          count(`${t.name}[${i}].l2[${j}].bitmap`, at + 8, 8, [0, 0xffffffffn, 0xffffffff00000000n, 2n ** 64n - 1n]);
      }
    }
  }
  // Refcount table and blocks.
  const rt = h.refcountTableOffset;
  meta(rt);
  for (let i = 0; i < Math.min(h.refcountTableClusters * (cs / 8), 64) && inFile(rt + i * 8); i++) {
    ptr(`reftable[${i}]`, rt + i * 8, 'plain');
    const rb = u64(img, rt + i * 8);
    if (rb > 0 && inFile(rb, cs)) {
      meta(rb);
      L.refblocks.push(rb);
    }
  }
  // Bitmap directory and bitmap tables.
  if (h.bitmaps) {
    const e = h.extensions.find((x) => x.type === C.EXT_BITMAPS)!;
    count('bitmaps.nb_bitmaps', e.offset, 4, [0, 1, h.bitmaps.nbBitmaps + 1, C.QCOW_MAX_BITMAPS, 0xffffffff]);
    const dsMax = C.QCOW_MAX_BITMAP_DIRECTORY_SIZE;
    count('bitmaps.directory_size', e.offset + 8, 8, [0, 8, 24, dsMax, dsMax + 1, 2n ** 64n - 1n]);
    ptr('bitmaps.directory_offset', e.offset + 16, 'plain');
    let p = h.bitmaps.directoryOffset;
    meta(p);
    for (let i = 0; i < h.bitmaps.nbBitmaps && inFile(p, 24); i++) {
      L.bitmapEntries.push(p);
      ptr(`bitmap[${i}].table_offset`, p, 'plain');
      const size = u32(img, p + 8);
      const tMax = C.BME_MAX_TABLE_SIZE;
      count(`bitmap[${i}].table_size`, p + 8, 4, [0, 1, size + 1, tMax, tMax + 1, 0xffffffff]);
      count(`bitmap[${i}].flags`, p + 12, 4, [0, 1, 2, 3, 4, 8, 0xffffffff]);
      count(`bitmap[${i}].type`, p + 16, 1, [0, 1, 2, 0xff]);
      count(`bitmap[${i}].granularity_bits`, p + 17, 1, [0, 8, 9, 31, 32, 63, 0xff]);
      count(`bitmap[${i}].name_size`, p + 18, 2, [0, 1, C.BME_MAX_NAME_SIZE, C.BME_MAX_NAME_SIZE + 1, 0xffff]);
      count(`bitmap[${i}].extra_data_size`, p + 20, 4, [0, 1, 8, 0xffffffff]);
      const table = u64(img, p);
      meta(table);
      for (let j = 0; j < Math.min(size, 32); j++) ptr(`bitmap[${i}].table[${j}]`, table + j * 8, 'bitmap-table');
      p += Math.ceil((24 + u16(img, p + 18) + u32(img, p + 20)) / 8) * 8;
    }
  }
  L.metadata = [...new Set(L.metadata)].sort((a, b) => a - b);
  L.data = [...new Set(L.data)].sort((a, b) => a - b);
  return L;
}
