// Clues that guest data gives about its own position. Some structures record where they sit on the
// disk (a GPT header its LBA, an NTFS boot sector its partition's first sector, an MBR sits at 0);
// others where they sit inside their volume (an ext2/3/4 superblock copy its block group, an LVM
// label its sector) together with the volume's size. Finding one in an L2 table's data places that
// table in the guest disk without any qcow2 metadata. Each detector checks the structure's own
// checksum where it has one, and its fields' plausibility otherwise.
import { crc32 } from 'node:zlib';

/** One structure found in a data cluster. */
export interface GuestClue {
  /** What it is, for the report ("GPT header", "ext4 superblock of block group 3", …). */
  kind: string;
  /** Byte offset inside the cluster. */
  at: number;
  /** Guest offsets this structure says it sits at (one of them). */
  absolute?: number[];
  /** Or: it sits `volumeOffset` bytes into the volume `volume`, which is `volumeSize` bytes long. */
  volume?: string;
  volumeOffset?: number;
  volumeSize?: number;
  /** The disk's size as the structure records it (a GPT header: its twin is the last sector). */
  diskSize?: number;
  /** Partitions (guest byte start and length) a partition table declares. */
  partitions?: Array<{ start: number; length: number }>;
}

const le16 = (b: Uint8Array, o: number): number => b[o]! | (b[o + 1]! << 8);
const le32 = (b: Uint8Array, o: number): number =>
  (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const le64 = (b: Uint8Array, o: number): number => le32(b, o) + le32(b, o + 4) * 0x1_0000_0000;
const ascii = (b: Uint8Array, o: number, s: string): boolean => {
  for (let k = 0; k < s.length; k++) if (b[o + k] !== s.charCodeAt(k)) return false;
  return true;
};
const hex = (b: Uint8Array, o: number, n: number): string =>
  Array.from(b.subarray(o, o + n), (x) => x.toString(16).padStart(2, '0')).join('');

const CRC32C = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C without the final inversion, from `seed` (the form ext4 stores). */
export function crc32cRaw(b: Uint8Array, seed = 0xffffffff): number {
  let c = seed >>> 0;
  for (const x of b) c = CRC32C[(c ^ x) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/**
 * Structures in a cluster's first bytes (`head`, from offset 0) and its last sector (`tail`, at
 * offset `tailAt`). Sector-aligned structures only.
 */
export function findGuestClues(head: Uint8Array, tail?: Uint8Array, tailAt = 0): GuestClue[] {
  const out: GuestClue[] = [];
  for (let s = 0; s + 512 <= head.length; s += 512) {
    const c = gptHeader(head, s) ?? ntfsBootSector(head, s, s) ?? lvmLabel(head, s) ?? ext4Superblock(head, s);
    if (c) out.push(c);
    if (s === 0) {
      const x = mbr(head);
      if (x) out.push(x);
    }
  }
  if (tail && tail.length >= 512) {
    const c = ntfsBootSector(tail, 0, tailAt);
    if (c) out.push(c);
  }
  return out;
}

/** GPT header (signature + valid header CRC): it records its own LBA, and the first partitions follow it. */
function gptHeader(b: Uint8Array, s: number): GuestClue | undefined {
  if (!ascii(b, s, 'EFI PART')) return undefined;
  const size = le32(b, s + 12);
  if (size < 92 || size > 512 || s + size > b.length) return undefined;
  const hdr = b.slice(s, s + size);
  const stored = le32(hdr, 16);
  hdr[16] = hdr[17] = hdr[18] = hdr[19] = 0;
  if (crc32(hdr) >>> 0 !== stored) return undefined;
  const myLba = le64(b, s + 24);
  const alternate = le64(b, s + 32);
  const c: GuestClue = {
    kind: `GPT header (LBA ${myLba})`,
    at: s,
    absolute: [myLba * 512],
    diskSize: (Math.max(myLba, alternate) + 1) * 512,
  };
  // The partition entries right after it, as far as this buffer holds them.
  const entriesLba = le64(b, s + 72);
  const entrySize = le32(b, s + 84);
  if (entriesLba === myLba + 1 && entrySize >= 128 && entrySize <= 4096) {
    const parts: Array<{ start: number; length: number }> = [];
    for (let e = s + 512; e + entrySize <= b.length; e += entrySize) {
      if (hex(b, e, 16) === '0'.repeat(32)) continue;
      const first = le64(b, e + 32);
      const last = le64(b, e + 40);
      if (last >= first && first > 0) parts.push({ start: first * 512, length: (last - first + 1) * 512 });
    }
    if (parts.length) c.partitions = parts;
  }
  return c;
}

/** A master boot record with a plausible partition table: it is the disk's sector 0. */
function mbr(b: Uint8Array): GuestClue | undefined {
  if (b.length < 512 || b[510] !== 0x55 || b[511] !== 0xaa) return undefined;
  if (ascii(b, 3, 'NTFS') || ascii(b, 3, 'EXFAT') || ascii(b, 0x36, 'FAT') || ascii(b, 0x52, 'FAT')) return undefined;
  const parts: Array<{ start: number; length: number }> = [];
  for (let e = 446; e < 510; e += 16) {
    const type = b[e + 4]!;
    if (type === 0) continue;
    const status = b[e]!;
    const start = le32(b, e + 8);
    const count = le32(b, e + 12);
    if ((status !== 0 && status !== 0x80) || start === 0 || count === 0) return undefined;
    if (type !== 0xee && type !== 0x05 && type !== 0x0f) parts.push({ start: start * 512, length: count * 512 });
  }
  if (!parts.length && !b.subarray(446, 510).some((x) => x === 0xee)) return undefined;
  return { kind: 'MBR partition table', at: 0, absolute: [0], partitions: parts };
}

/** NTFS boot sector or its backup: both record the partition's first sector ("hidden sectors") and length. */
function ntfsBootSector(b: Uint8Array, s: number, at: number): GuestClue | undefined {
  if (!ascii(b, s + 3, 'NTFS    ') || b[s + 510] !== 0x55 || b[s + 511] !== 0xaa) return undefined;
  const bps = le16(b, s + 11);
  const spc = b[s + 13]!;
  if (![512, 1024, 2048, 4096].includes(bps) || spc === 0) return undefined;
  const hidden = le32(b, s + 28);
  const total = le64(b, s + 40);
  if (total === 0) return undefined;
  // The primary sits at the partition's first sector, the backup at its last.
  return { kind: 'NTFS boot sector (or its backup)', at, absolute: [hidden * bps, (hidden + total) * bps] };
}

/** ext2/3/4 superblock copy: its block group number gives its offset in the file system. */
function ext4Superblock(b: Uint8Array, s: number): GuestClue | undefined {
  if (s + 1024 > b.length || le16(b, s + 56) !== 0xef53) return undefined;
  const logBs = le32(b, s + 24);
  const firstData = le32(b, s + 20);
  const bpg = le32(b, s + 32);
  if (logBs > 6 || firstData > 1 || bpg === 0) return undefined;
  const bs = 1024 << logBs;
  if (bpg > bs * 8 || (firstData === 1) !== (bs === 1024)) return undefined;
  const incompat = le32(b, s + 0x60);
  const roCompat = le32(b, s + 0x64);
  if (roCompat & 0x400 && crc32cRaw(b.subarray(s, s + 0x3fc)) !== le32(b, s + 0x3fc)) return undefined;
  const blocks = le32(b, s + 4) + (incompat & 0x80 ? le32(b, s + 0x150) * 0x1_0000_0000 : 0);
  const group = le16(b, s + 90);
  if (blocks === 0 || group * bpg >= blocks) return undefined;
  return {
    kind: group === 0 ? 'ext4 superblock' : `ext4 superblock backup (block group ${group})`,
    at: s,
    volume: `ext:${hex(b, s + 104, 16)}`,
    volumeOffset: group === 0 ? 1024 : (firstData + group * bpg) * bs,
    volumeSize: blocks * bs,
  };
}

/** LVM physical volume label: the sector it sits in, and the physical volume's size. */
function lvmLabel(b: Uint8Array, s: number): GuestClue | undefined {
  if (!ascii(b, s, 'LABELONE') || !ascii(b, s + 24, 'LVM2 001')) return undefined;
  const sector = le64(b, s + 8);
  const hdr = le32(b, s + 20);
  if (sector > 3 || hdr < 32 || hdr + 72 > 512) return undefined;
  const size = le64(b, s + hdr + 32);
  if (size === 0) return undefined;
  return {
    kind: 'LVM physical volume label',
    at: s,
    volume: `lvm:${String.fromCharCode(...b.subarray(s + hdr, s + hdr + 32))}`,
    volumeOffset: sector * 512,
    volumeSize: size,
  };
}
