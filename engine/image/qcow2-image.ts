import * as C from '../format/constants.js';
import { decodeHeader, geometry, type Geometry, type Qcow2Header } from '../format/header.js';
import { u32 } from '../format/bytes.js';
import { getRefcount } from '../format/refcount.js';
import { decodeSnapshotEntry, snapshotEntryLength, type SnapshotEntry } from '../format/snapshot.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError } from '../base/errors.js';

export interface OpenOptions {
  /** Open as the checker does: tolerate a missing refcount table and an invalid snapshot table. */
  checkMode?: boolean;
  /** Read an active L1 table that starts past end of file as zeros (as QEMU does) instead of refusing. */
  zeroFillPastEof?: boolean;
}

/**
 * An opened qcow2 image: its validated header, geometry and the tables every reader needs
 * (active L1, refcount table). Opening reads; it never writes.
 */
export class Qcow2Image {
  /** Raw active L1 table, l1Size * 8 bytes (zero-padded past end of file). */
  l1: Uint8Array;
  /** Raw refcount table, refcountTableClusters * clusterSize bytes (zero-padded past end of file). */
  reftable: Uint8Array;
  private refblockCache = new Map<number, Uint8Array>();

  private constructor(
    readonly io: PositionalIO,
    readonly header: Qcow2Header,
    readonly geo: Geometry,
    public fileSize: number,
    l1: Uint8Array,
    reftable: Uint8Array,
  ) {
    this.l1 = l1;
    this.reftable = reftable;
  }

  static async open(io: PositionalIO, opts: OpenOptions = {}): Promise<Qcow2Image> {
    const fileSize = await io.size();
    // The header cluster, or only its start when the header, its extensions and the backing file
    // name all lie inside it (large clusters: reading 2 MiB for a few hundred bytes costs ~1.5 ms).
    let first = await io.read(0, HEADER_PROBE);
    const cs = clusterSizeHint(first);
    if (cs > first.length && first.length === HEADER_PROBE && !headerWithin(first, cs)) first = await io.read(0, cs);
    const header = decodeHeader(first.subarray(0, Math.min(first.length, cs)), opts);
    const geo = geometry(header);
    const l1Bytes = header.l1Size * C.L1_ENTRY_SIZE;
    if (header.l1Size > 0 && header.l1TableOffset >= fileSize && !opts.zeroFillPastEof)
      throw new Qcow2FormatError(
        'Could not read L1 table: beyond end of file',
        'header.l1_table_offset',
        header.l1TableOffset,
      );
    const l1 = !l1Bytes
      ? new Uint8Array(0)
      : header.l1TableOffset >= fileSize
        ? new Uint8Array(l1Bytes)
        : await readPadded(io, header.l1TableOffset, l1Bytes);
    const rtBytes = header.refcountTableClusters * geo.clusterSize;
    const reftable =
      rtBytes && header.refcountTableOffset < fileSize
        ? await readPadded(io, header.refcountTableOffset, rtBytes)
        : new Uint8Array(rtBytes);
    return new Qcow2Image(io, header, geo, fileSize, l1, reftable);
  }

  get clusterSize(): number {
    return this.geo.clusterSize;
  }

  get virtualSize(): number {
    return this.header.size;
  }

  get hasExternalData(): boolean {
    return (this.header.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n;
  }

  get isDirty(): boolean {
    return (this.header.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
  }

  get isCorrupt(): boolean {
    return (this.header.incompatibleFeatures & C.INCOMPAT_CORRUPT) !== 0n;
  }

  /** Read `length` bytes of a structure; refuses ranges that start past end of file. */
  async readStructure(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (offset >= this.fileSize || offset + length > Number.MAX_SAFE_INTEGER)
      throw new Qcow2FormatError(`Could not read ${what}: beyond end of file`, what, offset);
    return readPadded(this.io, offset, length);
  }

  /** Refcount of a host cluster from the on-disk structure (0 where no refblock covers it). */
  async refcount(clusterIndex: number): Promise<number> {
    const rtIndex = Math.floor(clusterIndex / this.geo.refcountBlockEntries);
    if (rtIndex * 8 >= this.reftable.length) return 0;
    const hi = u32(this.reftable, rtIndex * 8);
    const lo = u32(this.reftable, rtIndex * 8 + 4);
    const off = hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
    if (off === 0) return 0;
    let block = this.refblockCache.get(off);
    if (!block) {
      if (off % this.clusterSize !== 0 || off >= this.fileSize) {
        throw new Qcow2FormatError('Refblock offset invalid', `refcount_table[${rtIndex}]`, `0x${off.toString(16)}`);
      }
      block = await readPadded(this.io, off, this.clusterSize);
      if (this.refblockCache.size > 256) this.refblockCache.clear();
      this.refblockCache.set(off, block);
    }
    return getRefcount(block, clusterIndex % this.geo.refcountBlockEntries, this.geo.refcountOrder);
  }

  /** Forget cached refcount blocks (after a writer changed them). */
  dropCaches(): void {
    this.refblockCache.clear();
  }

  /**
   * Read the snapshot table, bounded as QEMU bounds it (65536 entries, 1024 bytes of extra data
   * each, 64 MiB in all). Returns the entries and the table's byte length.
   */
  async readSnapshots(): Promise<{ entries: SnapshotEntry[]; byteLength: number }> {
    const h = this.header;
    if (h.nbSnapshots === 0) return { entries: [], byteLength: 0 };
    if (h.nbSnapshots > C.QCOW_MAX_SNAPSHOTS)
      throw new Qcow2FormatError('Snapshot table too large', 'header.nb_snapshots', h.nbSnapshots);
    if (h.snapshotsOffset % this.clusterSize !== 0)
      throw new Qcow2FormatError('Snapshot table offset invalid', 'header.snapshots_offset', h.snapshotsOffset);
    const entries: SnapshotEntry[] = [];
    let pos = 0;
    for (let i = 0; i < h.nbSnapshots; i++) {
      const fixed = await this.readStructure(h.snapshotsOffset + pos, C.SNAPSHOT_ENTRY_FIXED_SIZE, 'snapshot table');
      const extra = u32(fixed, 36);
      if (extra > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA)
        throw new Qcow2FormatError(
          `Too much extra metadata in snapshot table entry ${i}`,
          `snapshot[${i}].extra_data_size`,
          extra,
        );
      const len = snapshotEntryLength(fixed, 0);
      if (pos + len > C.QCOW_MAX_SNAPSHOTS_SIZE)
        throw new Qcow2FormatError('Snapshot table is too big', `snapshot[${i}]`, pos + len);
      const whole = await readPadded(this.io, h.snapshotsOffset + pos, len);
      entries.push(decodeSnapshotEntry(whole, 0, pos));
      pos += len;
    }
    return { entries, byteLength: pos };
  }
}

/** Bytes read first when opening: the header cluster's start. */
const HEADER_PROBE = 64 * 1024;

/**
 * Whether everything decodeHeader reads of cluster 0 (header, extensions up to their end marker,
 * backing file name) lies within `buf`, a prefix of a cluster of `cs` bytes. Anything unusual
 * answers false: the caller then reads the whole cluster and decodeHeader judges it.
 */
function headerWithin(buf: Uint8Array, cs: number): boolean {
  if (buf.length < C.HEADER_V2_LENGTH) return false;
  const version = u32(buf, C.HDR.version);
  const headerLength = version === 2 ? C.HEADER_V2_LENGTH : version === 3 ? u32(buf, C.HDR.headerLength) : -1;
  if (headerLength < C.HEADER_V2_LENGTH || headerLength > buf.length) return false;
  const backingHi = u32(buf, C.HDR.backingFileOffset);
  const backingOffset = u32(buf, C.HDR.backingFileOffset + 4);
  const backingSize = u32(buf, C.HDR.backingFileSize);
  if (backingHi !== 0 || backingOffset + backingSize > buf.length) return false;
  const extEnd = backingOffset !== 0 ? backingOffset : cs;
  for (let off = headerLength; off + 8 <= extEnd; ) {
    if (off + 8 > buf.length) return false;
    const type = u32(buf, off);
    const length = u32(buf, off + 4);
    if (type === C.EXT_END) return true;
    off += 8 + Math.ceil(length / 8) * 8;
    if (off > buf.length) return false;
  }
  return true;
}

/** Cluster size from a raw header buffer, to bound how much of the first read is cluster 0. */
function clusterSizeHint(buf: Uint8Array): number {
  if (buf.length < 24) return buf.length;
  const bits = u32(buf, C.HDR.clusterBits);
  return bits >= C.MIN_CLUSTER_BITS && bits <= C.MAX_CLUSTER_BITS ? 2 ** bits : buf.length;
}
