// Where every metadata structure of an image lives, found by the image's metadata traversal.
// Read-only; tolerant of damage: a pointer that is unaligned or leads past the end of the file is
// noted and not followed, so nothing is ever read or kept "there".
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { decodeHeader, geometry, type Geometry, type Qcow2Header } from '../format/header.js';
import type { PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError } from '../base/errors.js';
import { sourceFromHeader, traverse } from '../image/traversal/index.js';
import type { Reference, SnapshotTableProblem, TraversalVisitor } from '../image/traversal/index.js';
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
  const collector = new RangeCollector(fileSize, geo.clusterSize, notes);
  await traverse(sourceFromHeader(io, fileSize, header), collector.visitor(), { staleBitmaps: true });
  return {
    fileSize,
    clusterSize: geo.clusterSize,
    header,
    geo,
    ranges: collector.ranges,
    l2Tables: collector.l2Tables,
    notes,
  };
}

/**
 * Turns the traversal's references into byte ranges to keep, each structure once, with a note for
 * every pointer that is not followed. The traversal walks a layer's entries right after the pointer
 * to its L1 table, and a bitmap's table right after its directory entry: the labels follow that.
 */
class RangeCollector {
  readonly ranges: MetaRange[] = [];
  readonly l2Tables: number[] = [];
  private readonly seen = new Set<string>();
  private layerLabel = '';
  private bitmapLabel = '';

  constructor(
    private readonly fileSize: number,
    private readonly cs: number,
    private readonly notes: NoteList,
  ) {}

  visitor(): TraversalVisitor {
    return {
      reference: (r) => this.reference(r),
      snapshotTableProblem: (p) => this.snapshotTableProblem(p),
    };
  }

  private reference(r: Reference): boolean {
    switch (r.target) {
      case 'header':
        return this.range(0, this.cs, 'header', 'header cluster');
      case 'l1':
      case 'snapshot-l1':
        return this.l1Table(r);
      case 'l2':
        // An entry with flags and no offset is kept as it reads: cluster 0 as an L2 table.
        if (this.cluster(r.offset, 'l2', `${this.layerLabel} entry ${r.from.index}`)) this.l2Tables.push(r.offset);
        return false;
      case 'refcount-table':
        return this.range(r.offset, r.length, 'refcount-table', 'refcount table');
      case 'refcount-block': {
        if (r.offset === 0) return false;
        // Reserved bits make QEMU skip the block in its own walk, but refcount lookups still use it.
        const off = r.hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : r.offset;
        this.cluster(off, 'refcount-block', `refcount table entry ${r.from.index}`, r.from.index);
        return false;
      }
      case 'snapshot-table':
        return this.range(r.offset, r.length, 'snapshot-table', 'snapshot table');
      case 'crypto-header':
        return this.range(r.offset, r.length, 'crypto-header', 'encryption header');
      case 'bitmap-directory':
        return this.bitmapDirectory(r);
      case 'bitmap-table':
        return this.bitmapTable(r);
      case 'bitmap-data':
        this.cluster(r.offset, 'bitmap-data', `${this.bitmapLabel} entry ${r.from.index}`);
        return false;
      default:
        return false;
    }
  }

  /** An L1 table (active or a snapshot's): kept, and its entries followed, once. */
  private l1Table(r: Reference): boolean {
    const snapshot = r.target === 'snapshot-l1';
    const i = r.from.index;
    this.layerLabel = snapshot ? `snapshot ${i} L1 table` : 'active L1 table';
    if (snapshot && r.problem === 'unaligned') {
      this.notes.add(
        `snapshot entry ${i}: L1 table offset ${hexOff(r.offset)} is not cluster aligned; its tables were not copied`,
      );
      return false;
    }
    if (snapshot && r.problem === 'too-large') {
      this.notes.add(`snapshot entry ${i}: L1 size ${hexOff(r.length / 8)} is too large; its tables were not copied`);
      return false;
    }
    if (r.problem === 'unaligned') {
      this.notes.add(`${this.layerLabel} at ${hexOff(r.offset)} is not cluster aligned; its tables were not copied`);
      return false;
    }
    if (r.length === 0) return false;
    const key = `l1table:${r.offset}:${r.length / 8}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return this.range(r.offset, r.length, snapshot ? 'snapshot-l1' : 'l1', this.layerLabel);
  }

  private snapshotTableProblem(p: SnapshotTableProblem): void {
    if (p.problem === 'unaligned')
      this.notes.add(`snapshot table offset ${hexOff(p.value)} is not cluster aligned; snapshot table not copied`);
    else if (p.problem === 'too-many')
      this.notes.add(`the header claims ${p.value} snapshots; only the first ${C.QCOW_MAX_SNAPSHOTS} were followed`);
    else if (p.problem === 'beyond-eof')
      this.notes.add(
        `snapshot table entry ${p.index} at ${hexOff(p.value)} lies beyond the end of the file; the rest of the table was not followed`,
      );
  }

  private bitmapDirectory(r: Reference): boolean {
    if (r.offset % this.cs !== 0) {
      this.notes.add(`bitmap directory offset ${hexOff(r.offset)} is not cluster aligned; bitmaps not copied`);
      return false;
    }
    const dirSize = Math.min(r.length, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE);
    if (dirSize < r.length)
      this.notes.add(`bitmap directory size ${r.length} exceeds QEMU's maximum; only ${dirSize} bytes were followed`);
    return this.range(r.offset, dirSize, 'bitmap-directory', 'bitmap directory');
  }

  private bitmapTable(r: Reference): boolean {
    const i = r.from.index;
    this.bitmapLabel = `bitmap ${i} table`;
    if (r.problem === 'unaligned') {
      this.notes.add(`bitmap ${i}: table offset ${hexOff(r.offset)} is not cluster aligned; its table was not copied`);
      return false;
    }
    if (r.problem === 'too-large') {
      this.notes.add(`bitmap ${i}: table size ${r.length / 8} is too large; its table was not copied`);
      return false;
    }
    return this.range(r.offset, r.length, 'bitmap-table', this.bitmapLabel);
  }

  /** Record a byte range; false (with a note) when it starts past the end of the file. */
  private range(offset: number, length: number, kind: MetaKind, label: string): boolean {
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
  private cluster(offset: number, kind: MetaKind, label: string, index?: number): boolean {
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
}
