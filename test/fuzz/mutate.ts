// Seeded mutations of valid qcow2 images: header fields, extensions, tables and entries set to
// boundary values or bit-flipped, clusters zeroed or duplicated, files truncated. The targets are
// found by decoding the seed image once, so mutations land on real structures.
import * as C from '../../engine/format/constants.js';
import { u16, u32, u64 } from '../../engine/format/bytes.js';
import { decodeHeader } from '../../engine/format/header.js';
import { l1Offset } from '../../engine/format/l2-entry.js';

/** The lab's seedable PRNG, re-exported for the fuzz test. */
export { prng } from '../../engine/lab/crash-states.js';

export interface Field {
  name: string;
  offset: number;
  size: 1 | 2 | 4 | 8;
  /** The field holds a host offset (offset-like boundary values are tried). */
  isOffset?: boolean;
}

export interface Region {
  name: string;
  offset: number;
  length: number;
}

export interface Targets {
  fields: Field[];
  /** Metadata byte ranges for bit flips. */
  regions: Region[];
  /** Host clusters holding metadata (for zeroing and duplication). */
  clusters: number[];
  clusterSize: number;
}

/** Find the structures of a valid image to aim mutations at. */
export function findTargets(img: Uint8Array): Targets {
  const h = decodeHeader(img.subarray(0, Math.min(img.length, 2 * 1024 * 1024)));
  const cs = 2 ** h.clusterBits;
  const fields: Field[] = [];
  const regions: Region[] = [];
  const clusters = new Set<number>([0]);
  const add = (name: string, offset: number, size: Field['size'], isOffset = false): void => {
    if (offset + size <= img.length) fields.push({ name, offset, size, isOffset });
  };
  const H = C.HDR;
  add('header.magic', H.magic, 4);
  add('header.version', H.version, 4);
  add('header.backing_file_offset', H.backingFileOffset, 8, true);
  add('header.backing_file_size', H.backingFileSize, 4);
  add('header.cluster_bits', H.clusterBits, 4);
  add('header.size', H.size, 8);
  add('header.crypt_method', H.cryptMethod, 4);
  add('header.l1_size', H.l1Size, 4);
  add('header.l1_table_offset', H.l1TableOffset, 8, true);
  add('header.refcount_table_offset', H.refcountTableOffset, 8, true);
  add('header.refcount_table_clusters', H.refcountTableClusters, 4);
  add('header.nb_snapshots', H.nbSnapshots, 4);
  add('header.snapshots_offset', H.snapshotsOffset, 8, true);
  if (h.version === 3) {
    add('header.incompatible_features', H.incompatibleFeatures, 8);
    add('header.compatible_features', H.compatibleFeatures, 8);
    add('header.autoclear_features', H.autoclearFeatures, 8);
    add('header.refcount_order', H.refcountOrder, 4);
    add('header.header_length', H.headerLength, 4);
    add('header.compression_type', H.compressionType, 1);
  }
  regions.push({ name: 'cluster 0', offset: 0, length: Math.min(cs, img.length, 4096) });
  for (const e of h.extensions) {
    add(`ext[${e.type.toString(16)}].type`, e.offset - 8, 4);
    add(`ext[${e.type.toString(16)}].length`, e.offset - 4, 4);
    regions.push({ name: `ext[${e.type.toString(16)}] data`, offset: e.offset, length: e.length });
  }
  if (h.bitmaps) {
    const e = h.extensions.find((x) => x.type === C.EXT_BITMAPS)!;
    add('bitmaps.nb_bitmaps', e.offset, 4);
    add('bitmaps.directory_size', e.offset + 8, 8);
    add('bitmaps.directory_offset', e.offset + 16, 8, true);
    const dir = h.bitmaps.directoryOffset;
    regions.push({ name: 'bitmap directory', offset: dir, length: h.bitmaps.directorySize });
    clusters.add(Math.floor(dir / cs));
    let p = dir;
    for (let i = 0; i < h.bitmaps.nbBitmaps && p + 24 <= img.length; i++) {
      add(`bitmap[${i}].table_offset`, p, 8, true);
      add(`bitmap[${i}].table_size`, p + 8, 4);
      add(`bitmap[${i}].flags`, p + 12, 4);
      add(`bitmap[${i}].type`, p + 16, 1);
      add(`bitmap[${i}].granularity_bits`, p + 17, 1);
      add(`bitmap[${i}].name_size`, p + 18, 2);
      add(`bitmap[${i}].extra_data_size`, p + 20, 4);
      const table = u64(img, p);
      const size = u32(img, p + 8);
      clusters.add(Math.floor(table / cs));
      for (let j = 0; j < Math.min(size, 4); j++) add(`bitmap[${i}].table[${j}]`, table + j * 8, 8, true);
      p += Math.ceil((24 + u16(img, p + 18) + u32(img, p + 20)) / 8) * 8;
    }
  }
  if (h.crypto) {
    const e = h.extensions.find((x) => x.type === C.EXT_CRYPTO_HEADER)!;
    add('crypto.offset', e.offset, 8, true);
    add('crypto.length', e.offset + 8, 8);
    const l = h.crypto.offset;
    clusters.add(Math.floor(l / cs));
    regions.push({ name: 'LUKS header', offset: l, length: C.LUKS_HEADER_SIZE });
    add('luks.version', l + 6, 2);
    add('luks.payload_offset', l + 104, 4);
    add('luks.key_bytes', l + 108, 4);
    add('luks.master_key_iterations', l + 164, 4);
    for (let s = 0; s < 8; s++) {
      const o = l + 208 + s * 48;
      add(`luks.slot[${s}].active`, o, 4);
      add(`luks.slot[${s}].iterations`, o + 4, 4);
      add(`luks.slot[${s}].key_offset`, o + 40, 4);
      add(`luks.slot[${s}].stripes`, o + 44, 4);
    }
  }

  // Active L1 and the L2 tables it points to.
  const l1 = h.l1TableOffset;
  clusters.add(Math.floor(l1 / cs));
  regions.push({ name: 'L1 table', offset: l1, length: h.l1Size * 8 });
  const l2EntrySize = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n ? 16 : 8;
  for (let i = 0; i < Math.min(h.l1Size, 8); i++) {
    add(`l1[${i}]`, l1 + i * 8, 8, true);
    const l2 = l1Offset(u32(img, l1 + i * 8), u32(img, l1 + i * 8 + 4));
    if (l2 === 0 || l2 >= img.length) continue;
    clusters.add(Math.floor(l2 / cs));
    regions.push({ name: `L2 table ${i}`, offset: l2, length: cs });
    for (let j = 0; j < Math.min(cs / l2EntrySize, 24); j++) {
      add(`l2[${i}][${j}]`, l2 + j * l2EntrySize, 8, true);
      if (l2EntrySize === 16) add(`l2[${i}][${j}].bitmap`, l2 + j * 16 + 8, 8);
      const hi = u32(img, l2 + j * l2EntrySize);
      if (hi & C.OFLAG_COMPRESSED_HI) {
        const off = (hi & (2 ** (62 - (h.clusterBits - 8) - 32) - 1)) * 2 ** 32 + u32(img, l2 + j * l2EntrySize + 4);
        regions.push({ name: `compressed data l2[${i}][${j}]`, offset: off, length: 512 });
      }
    }
  }
  // Refcount table and its first refcount block.
  const rt = h.refcountTableOffset;
  clusters.add(Math.floor(rt / cs));
  regions.push({ name: 'refcount table', offset: rt, length: Math.min(h.refcountTableClusters * cs, 64) });
  for (let i = 0; i < 4; i++) add(`reftable[${i}]`, rt + i * 8, 8, true);
  const rb = u64(img, rt);
  if (rb > 0 && rb < img.length) {
    clusters.add(Math.floor(rb / cs));
    regions.push({ name: 'refcount block 0', offset: rb, length: Math.min(cs, 256) });
  }
  // Snapshot table entries and the snapshots' L1 tables.
  let sp = h.snapshotsOffset;
  for (let i = 0; i < h.nbSnapshots && sp + 40 <= img.length; i++) {
    clusters.add(Math.floor(sp / cs));
    add(`snapshot[${i}].l1_table_offset`, sp, 8, true);
    add(`snapshot[${i}].l1_size`, sp + 8, 4);
    add(`snapshot[${i}].id_size`, sp + 12, 2);
    add(`snapshot[${i}].name_size`, sp + 14, 2);
    add(`snapshot[${i}].vm_clock`, sp + 24, 8);
    add(`snapshot[${i}].vm_state_size`, sp + 32, 4);
    add(`snapshot[${i}].extra_data_size`, sp + 36, 4);
    add(`snapshot[${i}].extra.vm_state_size`, sp + 40, 8);
    add(`snapshot[${i}].extra.disk_size`, sp + 48, 8);
    add(`snapshot[${i}].extra.icount`, sp + 56, 8);
    const sl1 = u64(img, sp);
    clusters.add(Math.floor(sl1 / cs));
    add(`snapshot[${i}].l1[0]`, sl1, 8, true);
    regions.push({ name: `snapshot ${i} entry`, offset: sp, length: 40 });
    sp += Math.ceil((40 + u32(img, sp + 36) + u16(img, sp + 12) + u16(img, sp + 14)) / 8) * 8;
  }
  return {
    fields: fields.filter((f) => f.offset >= 0),
    regions: regions.filter((r) => r.offset >= 0 && r.offset < img.length && r.length > 0),
    clusters: [...clusters].filter((c) => (c + 1) * cs <= img.length),
    clusterSize: cs,
  };
}

function readField(b: Uint8Array, f: Field): bigint {
  let v = 0n;
  for (let i = 0; i < f.size; i++) v = (v << 8n) | BigInt(b[f.offset + i]!);
  return v;
}

function writeField(b: Uint8Array, f: Field, v: bigint): void {
  const mask = (1n << BigInt(f.size * 8)) - 1n;
  let x = v & mask;
  for (let i = f.size - 1; i >= 0; i--) {
    b[f.offset + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** Boundary and random values for a field. */
function pickValue(rand: () => number, f: Field, old: bigint, fileSize: number, cs: number): bigint {
  const bits = BigInt(f.size * 8);
  const max = (1n << bits) - 1n;
  const choices: Array<() => bigint> = [
    () => 0n,
    () => max,
    () => 1n,
    () => max >> 1n,
    () => (max >> 1n) + 1n,
    () => old + 1n,
    () => old - 1n,
    () => old ^ (1n << BigInt(Math.floor(rand() * f.size * 8))),
    () => BigInt(Math.floor(rand() * 256)),
    () => BigInt(Math.floor(rand() * 2 ** 32)) * (f.size === 8 ? BigInt(Math.floor(rand() * 2 ** 32)) : 1n),
  ];
  if (f.isOffset || f.size >= 4) {
    choices.push(
      () => BigInt(fileSize),
      () => BigInt(fileSize - 8),
      () => BigInt(Math.ceil(fileSize / cs) * cs),
      () => BigInt(Math.floor(rand() * Math.ceil(fileSize / cs)) * cs),
      () => old + BigInt(cs),
      () => old + 512n,
      () => old * 2n,
      () => 1n << BigInt(40 + Math.floor(rand() * 23)),
      () => (old & ~((1n << 56n) - 1n)) | (BigInt(Math.floor(rand() * 2 ** 20)) * BigInt(cs)),
    );
  }
  return choices[Math.floor(rand() * choices.length)]!() & max;
}

/** Apply one random mutation in place (or return a truncated copy). Returns the new bytes and a description. */
export function mutateOnce(rand: () => number, img: Uint8Array, t: Targets): { bytes: Uint8Array; what: string } {
  const r = rand();
  const cs = t.clusterSize;
  // After a truncation only what is left can be aimed at.
  const fields = t.fields.filter((f) => f.offset + f.size <= img.length);
  const regions = t.regions.filter((g) => g.offset < img.length);
  const clusters = t.clusters.filter((c) => (c + 1) * cs <= img.length);
  if (r < 0.55 && fields.length > 0) {
    const f = fields[Math.floor(rand() * fields.length)]!;
    const old = readField(img, f);
    const v = pickValue(rand, f, old, img.length, cs);
    writeField(img, f, v);
    return { bytes: img, what: `${f.name}: 0x${old.toString(16)} -> 0x${v.toString(16)}` };
  }
  if (r < 0.8 && regions.length > 0) {
    const g = regions[Math.floor(rand() * regions.length)]!;
    const n = 1 + Math.floor(rand() * 4);
    const flips: string[] = [];
    for (let i = 0; i < n; i++) {
      const off = g.offset + Math.floor(rand() * Math.min(g.length, img.length - g.offset));
      const bit = Math.floor(rand() * 8);
      img[off] = img[off]! ^ (1 << bit);
      flips.push(`${off}.${bit}`);
    }
    return { bytes: img, what: `flip ${g.name} bits ${flips.join(',')}` };
  }
  if (r < 0.87 && clusters.length > 0) {
    const c = clusters[Math.floor(rand() * clusters.length)]!;
    if (c === 0) return { bytes: img, what: 'zero cluster 0 skipped' };
    img.fill(0, c * cs, (c + 1) * cs);
    return { bytes: img, what: `zero cluster ${c}` };
  }
  if (r < 0.93 && clusters.length > 1) {
    const from = clusters[Math.floor(rand() * clusters.length)]!;
    const to = clusters[Math.floor(rand() * clusters.length)]!;
    img.copyWithin(to * cs, from * cs, (from + 1) * cs);
    return { bytes: img, what: `copy cluster ${from} over ${to}` };
  }
  const cut = rand() < 0.5 ? Math.floor(rand() * Math.ceil(img.length / cs)) * cs : Math.floor(rand() * img.length);
  return { bytes: img.slice(0, cut), what: `truncate to ${cut}` };
}
