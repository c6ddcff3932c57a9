// Where every metadata structure of an image lives, found by following the header's pointers and
// the tables they lead to. Read-only; tolerant of damage: a pointer that is unaligned or leads past
// the end of the file is noted and not followed, so nothing is ever read or kept "there".
import * as C from '../format/constants.js';
import { walkBitmapDirectory } from '../format/bitmap.js';
import { u32, u64 } from '../format/bytes.js';
import { decodeHeader, geometry, type Geometry, type Qcow2Header } from '../format/header.js';
import { l1Offset } from '../format/l2-entry.js';
import { snapshotEntryLength } from '../format/snapshot.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError } from '../base/errors.js';
import { forEachEntry } from './table-reader.js';
import { NoteList, hexOff } from './notes.js';

export type MetaKind =
  | 'header'
  | 'l1'
  | 'l2'
  | 'refcount-table'
  | 'refcount-block'
  | 'snapshot-table'
  | 'snapshot-l1'
  | 'bitmap-directory'
  | 'bitmap-table'
  | 'bitmap-data'
  | 'crypto-header';

export const META_KIND_LABELS: Record<MetaKind, string> = {
  header: 'header cluster',
  l1: 'active L1 table',
  l2: 'L2 tables',
  'refcount-table': 'refcount table',
  'refcount-block': 'refcount blocks',
  'snapshot-table': 'snapshot table',
  'snapshot-l1': 'snapshot L1 tables',
  'bitmap-directory': 'bitmap directory',
  'bitmap-table': 'bitmap tables',
  'bitmap-data': 'bitmap data clusters',
  'crypto-header': 'encryption (LUKS) header',
};

export interface MetaRange {
  offset: number;
  /** Clamped to the end of the file. */
  length: number;
  kind: MetaKind;
  /** For refcount blocks: the refcount table index that points here. */
  index?: number;
}

export interface MetadataMap {
  fileSize: number;
  clusterSize: number;
  /** Absent when the header itself was refused (then only the header cluster is mapped). */
  header?: Qcow2Header;
  geo?: Geometry;
  /** Why the header was refused, in QEMU's words plus field and value. */
  headerRefusal?: string;
  ranges: MetaRange[];
  /** Offsets of every L2 table found (active and snapshots), each once. */
  l2Tables: number[];
  notes: NoteList;
}

/** Follow every metadata pointer of the image in `io`. Throws only when the file is not qcow2. */
export async function mapMetadata(io: PositionalIO): Promise<MetadataMap> {
  const fileSize = await io.size();
  const first = await io.read(0, Math.min(fileSize, 2 * 1024 * 1024));
  if (first.length < 4 || u32(first, C.HDR.magic) !== C.QCOW2_MAGIC) {
    const magic = first.length >= 4 ? `0x${u32(first, 0).toString(16)}` : `${first.length} bytes`;
    throw new Qcow2FormatError('Image is not in qcow2 format', 'header.magic', magic);
  }
  const bits = first.length >= 24 ? u32(first, C.HDR.clusterBits) : 0;
  const bitsValid = bits >= C.MIN_CLUSTER_BITS && bits <= C.MAX_CLUSTER_BITS;
  const notes = new NoteList();
  let header: Qcow2Header;
  try {
    header = decodeHeader(first.subarray(0, bitsValid ? 2 ** bits : first.length), { checkMode: true });
  } catch (err) {
    if (!(err instanceof Qcow2FormatError)) throw err;
    // QEMU refuses such an image from its header alone: the header is all a support engineer needs.
    const keep = Math.min(fileSize, bitsValid ? 2 ** bits : C.SECTOR_SIZE);
    notes.add(`the header was refused (${err.message}); only the first ${keep} bytes were kept`);
    return {
      fileSize,
      clusterSize: bitsValid ? 2 ** bits : C.SECTOR_SIZE,
      headerRefusal: err.message,
      ranges: [{ offset: 0, length: keep, kind: 'header' }],
      l2Tables: [],
      notes,
    };
  }
  const geo = geometry(header);
  const walker = new Walker(io, fileSize, geo.clusterSize, notes);
  walker.range(0, geo.clusterSize, 'header', 'header cluster');
  await walker.l1Table(header.l1TableOffset, header.l1Size, 'l1', 'active L1 table');
  await walker.refcountTable(header);
  await walker.snapshots(header);
  if (header.crypto && header.crypto.length > 0)
    walker.range(header.crypto.offset, header.crypto.length, 'crypto-header', 'encryption header');
  await walker.bitmaps(header);
  return {
    fileSize,
    clusterSize: geo.clusterSize,
    header,
    geo,
    ranges: walker.ranges,
    l2Tables: walker.l2Tables,
    notes,
  };
}

class Walker {
  readonly ranges: MetaRange[] = [];
  readonly l2Tables: number[] = [];
  private readonly seen = new Set<string>();

  constructor(
    private readonly io: PositionalIO,
    private readonly fileSize: number,
    private readonly cs: number,
    private readonly notes: NoteList,
  ) {}

  /** Record a byte range; false (with a note) when it starts past the end of the file. */
  range(offset: number, length: number, kind: MetaKind, label: string): boolean {
    if (length <= 0) return false;
    if (offset >= this.fileSize) {
      this.notes.add(
        `${label} at ${hexOff(offset)} lies beyond the end of the file (${hexOff(this.fileSize)}); nothing copied there`,
      );
      return false;
    }
    this.ranges.push({ offset, length: Math.min(length, this.fileSize - offset), kind });
    return true;
  }

  /** Record a one-cluster structure reached through a table entry; refuses unaligned pointers. */
  cluster(offset: number, kind: MetaKind, label: string, index?: number): boolean {
    const key = `${kind}:${offset}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    if (offset % this.cs !== 0) {
      this.notes.add(`${label} points at ${hexOff(offset)}, which is not cluster aligned; nothing copied there`);
      return false;
    }
    const ok = this.range(offset, this.cs, kind, label);
    if (ok && index !== undefined) this.ranges[this.ranges.length - 1]!.index = index;
    return ok;
  }

  /** An L1 table (active or a snapshot's) and the L2 tables it points at. */
  async l1Table(offset: number, entries: number, kind: 'l1' | 'snapshot-l1', label: string): Promise<void> {
    if (entries === 0) return;
    const key = `l1table:${offset}:${entries}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (!this.range(offset, entries * C.L1_ENTRY_SIZE, kind, label)) return;
    await forEachEntry(this.io, offset, entries * C.L1_ENTRY_SIZE, this.fileSize, (i, hi, lo) => {
      if (hi === 0 && lo === 0) return;
      const l2 = l1Offset(hi, lo);
      if (this.cluster(l2, 'l2', `${label} entry ${i}`)) this.l2Tables.push(l2);
    });
  }

  async refcountTable(h: Qcow2Header): Promise<void> {
    const bytes = h.refcountTableClusters * this.cs;
    if (!this.range(h.refcountTableOffset, bytes, 'refcount-table', 'refcount table')) return;
    await forEachEntry(this.io, h.refcountTableOffset, bytes, this.fileSize, (i, hi, lo) => {
      const offLo = (lo & C.REFT_OFFSET_MASK_LO) >>> 0;
      if (hi === 0 && offLo === 0) return;
      // Reserved bits make QEMU skip the block in its own walk, but refcount lookups still use it.
      const off = hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + offLo;
      this.cluster(off, 'refcount-block', `refcount table entry ${i}`, i);
    });
  }

  async snapshots(h: Qcow2Header): Promise<void> {
    if (h.nbSnapshots === 0) return;
    if (h.snapshotsOffset % this.cs !== 0) {
      this.notes.add(
        `snapshot table offset ${hexOff(h.snapshotsOffset)} is not cluster aligned; snapshot table not copied`,
      );
      return;
    }
    const count = Math.min(h.nbSnapshots, C.QCOW_MAX_SNAPSHOTS);
    if (h.nbSnapshots > count)
      this.notes.add(`the header claims ${h.nbSnapshots} snapshots; only the first ${count} were followed`);
    let pos = 0;
    for (let i = 0; i < count && pos <= C.QCOW_MAX_SNAPSHOTS_SIZE; i++) {
      const at = h.snapshotsOffset + pos;
      if (at >= this.fileSize) {
        this.notes.add(
          `snapshot table entry ${i} at ${hexOff(at)} lies beyond the end of the file; the rest of the table was not followed`,
        );
        break;
      }
      const fixed = await readPadded(this.io, at, C.SNAPSHOT_ENTRY_FIXED_SIZE);
      const l1Off = u64(fixed, 0);
      const l1Size = u32(fixed, 8);
      if (l1Off % this.cs !== 0)
        this.notes.add(
          `snapshot entry ${i}: L1 table offset ${hexOff(l1Off)} is not cluster aligned; its tables were not copied`,
        );
      else if (l1Size > C.QCOW_MAX_L1_SIZE / C.L1_ENTRY_SIZE)
        this.notes.add(`snapshot entry ${i}: L1 size ${hexOff(l1Size)} is too large; its tables were not copied`);
      else await this.l1Table(l1Off, l1Size, 'snapshot-l1', `snapshot ${i} L1 table`);
      pos += snapshotEntryLength(fixed, 0);
    }
    this.range(h.snapshotsOffset, pos, 'snapshot-table', 'snapshot table');
  }

  async bitmaps(h: Qcow2Header): Promise<void> {
    const b = h.bitmaps;
    if (!b || b.directorySize === 0) return;
    if (b.directoryOffset % this.cs !== 0) {
      this.notes.add(`bitmap directory offset ${hexOff(b.directoryOffset)} is not cluster aligned; bitmaps not copied`);
      return;
    }
    const dirSize = Math.min(b.directorySize, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE);
    if (dirSize < b.directorySize)
      this.notes.add(
        `bitmap directory size ${b.directorySize} exceeds QEMU's maximum; only ${dirSize} bytes were followed`,
      );
    if (!this.range(b.directoryOffset, dirSize, 'bitmap-directory', 'bitmap directory')) return;
    const dir = await readPadded(this.io, b.directoryOffset, Math.min(dirSize, this.fileSize - b.directoryOffset));
    for (const [i, e] of walkBitmapDirectory(dir, b.nbBitmaps).entries.entries()) {
      const tableOff = e.tableOffset;
      const tableSize = e.tableSize;
      if (tableOff % this.cs !== 0) {
        this.notes.add(
          `bitmap ${i}: table offset ${hexOff(tableOff)} is not cluster aligned; its table was not copied`,
        );
        continue;
      }
      if (tableSize > C.BME_MAX_TABLE_SIZE) {
        this.notes.add(`bitmap ${i}: table size ${tableSize} is too large; its table was not copied`);
        continue;
      }
      const label = `bitmap ${i} table`;
      if (!this.range(tableOff, tableSize * 8, 'bitmap-table', label)) continue;
      await forEachEntry(this.io, tableOff, tableSize * 8, this.fileSize, (j, hi, lo) => {
        const off = (hi & C.BME_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.BME_OFFSET_MASK_LO) >>> 0);
        if (off !== 0) this.cluster(off, 'bitmap-data', `${label} entry ${j}`);
      });
    }
  }
}
