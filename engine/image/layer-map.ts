// Where the guest bytes of ONE layer live: walks L1/L2 (standard and extended entries) and answers,
// for a guest offset, the longest run that shares one state within that layer. The chain reader,
// block status (map) and export are all built on this; nothing here follows backing files.
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { decodeCompressed, type CompressedDescriptor } from '../format/l2-entry.js';
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import { Qcow2FormatError, UnreadableError } from '../base/errors.js';
import type { Qcow2Image } from './qcow2-image.js';
import type { SnapshotEntry } from '../format/snapshot.js';

/** What a run of guest bytes is, in one layer (QEMU's subcluster types, grouped). */
export const enum SegKind {
  /** Stored raw at `host` (QEMU NORMAL). */
  Data = 0,
  /** Reads as zeros (ZERO_PLAIN, or ZERO_ALLOC with `host` = the preallocated cluster). */
  Zero = 1,
  /** Not defined here: read from the backing layer (UNALLOCATED_PLAIN, or _ALLOC with `host`). */
  Unallocated = 2,
  /** One compressed cluster; `compressed` says where its stream is. */
  Compressed = 3,
}

export interface Segment {
  kind: SegKind;
  /** Bytes from the queried offset that share this state (always > 0). */
  length: number;
  /** Host byte offset matching the queried guest offset, when the layer reserves one (-1 if none). */
  host: number;
  /** The file `host` refers to (the image, its external data file, or a raw layer's file). */
  file: PositionalIO | undefined;
  /** Compressed: the descriptor and the guest offset where its cluster starts. */
  compressed?: CompressedDescriptor;
  clusterStart?: number;
  /** Data of an encrypted image (not decryptable here). */
  encrypted?: boolean;
}

/** The mapping of one layer. */
export interface LayerMap {
  /** Guest bytes this layer defines; callers never query at or beyond it. */
  readonly size: number;
  /** State at guest offset `off`, for at most `max` bytes (`max` > 0, off + max <= size). */
  segment(off: number, max: number): Promise<Segment>;
}

/** A raw layer: every byte is data at the same offset of its file. */
export class RawLayerMap implements LayerMap {
  constructor(
    readonly io: PositionalIO,
    readonly size: number,
  ) {}

  async segment(off: number, max: number): Promise<Segment> {
    return { kind: SegKind.Data, length: max, host: off, file: this.io };
  }
}

/** `%#lx` as C prints it: 0x-prefixed lowercase hex, and a bare 0 for zero. */
export function hexAlt(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

/** Bound on L2 tables kept in memory, in bytes (at least 16 tables are kept). */
const L2_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * A qcow2 layer: the active L1 table or a snapshot's. Every L2 offset and every host offset is
 * checked (alignment, end of file, identity mapping with an external data file) and refused with
 * QEMU's wording plus the field and value.
 */
export class Qcow2LayerMap implements LayerMap {
  private readonly l2Cache = new Map<number, Uint8Array>();
  private readonly l2CacheMax: number;
  private readonly cs: number;
  private readonly clusterBits: number;
  private readonly l2Entries: number;
  private readonly extL2: boolean;
  private readonly external: boolean;
  private readonly encrypted: boolean;
  private readonly v2: boolean;
  /** Where data clusters live: the image or its external data file. */
  readonly dataIO: PositionalIO;

  constructor(
    readonly image: Qcow2Image,
    /** Raw L1 table (l1Size * 8 bytes). */
    private readonly l1: Uint8Array,
    readonly size: number,
    dataFile?: PositionalIO,
    /** What the L1 is called in messages ("L1" or "snapshot 'x' L1"). */
    private readonly l1Name = 'l1_table',
  ) {
    const g = image.geo;
    this.cs = g.clusterSize;
    this.clusterBits = g.clusterBits;
    this.l2Entries = g.l2Entries;
    this.extL2 = g.extendedL2;
    this.external = image.hasExternalData;
    this.encrypted = image.header.cryptMethod !== C.CRYPT_NONE;
    this.v2 = image.header.version === 2;
    if (this.external && !dataFile)
      throw new UnreadableError(`'data-file' is required for this image (no external data file was opened)`);
    this.dataIO = dataFile ?? image.io;
    this.l2CacheMax = Math.max(16, Math.floor(L2_CACHE_BYTES / this.cs));
  }

  /** The layer of the image's current state (active L1). */
  static active(image: Qcow2Image, dataFile?: PositionalIO): Qcow2LayerMap {
    return new Qcow2LayerMap(image, image.l1, image.virtualSize, dataFile);
  }

  /**
   * The layer of an internal snapshot: its own L1 table (bounded as QEMU bounds it) and its own
   * disk size (from the extra data; the current size when the entry does not record one).
   */
  static async snapshot(image: Qcow2Image, sn: SnapshotEntry, dataFile?: PositionalIO): Promise<Qcow2LayerMap> {
    const field = `snapshot[${sn.id}].l1_table`;
    if (sn.l1Size > C.QCOW_MAX_L1_SIZE / C.L1_ENTRY_SIZE)
      throw new Qcow2FormatError('Snapshot L1 table too large', `${field}_size`, sn.l1Size);
    if (sn.l1TableOffset % image.clusterSize !== 0)
      throw new Qcow2FormatError('Snapshot L1 table offset invalid', `${field}_offset`, hexAlt(sn.l1TableOffset));
    const bytes = sn.l1Size * C.L1_ENTRY_SIZE;
    const l1 = bytes === 0 ? new Uint8Array(0) : await image.readStructure(sn.l1TableOffset, bytes, `${field}_offset`);
    // Guest ranges past the end of a short L1 read as unallocated, as QEMU reads them.
    const size = sn.diskSize ?? image.virtualSize;
    return new Qcow2LayerMap(image, l1, size, dataFile, `snapshot '${sn.name}' L1`);
  }

  async segment(off: number, max: number): Promise<Segment> {
    const cs = this.cs;
    const coverage = cs * this.l2Entries;
    const l1Index = Math.floor(off / coverage);
    const l2Start = l1Index * coverage;
    // Runs never cross an L2 table: clamp to this table's coverage.
    const limit = Math.min(max, l2Start + coverage - off);
    const l2Offset = this.l2OffsetAt(l1Index);
    if (l2Offset === 0) return this.unallocatedRun(off, limit, l1Index, coverage, max);
    const l2 = await this.loadL2(l2Offset, l1Index);
    const first = Math.floor((off - l2Start) / cs);
    const inCluster = off - l2Start - first * cs;
    return this.extL2
      ? this.extendedRun(l2, l2Offset, first, inCluster, off, limit)
      : this.standardRun(l2, l2Offset, first, inCluster, off, limit);
  }

  /** L2 table offset of L1 entry i (0 past the table or when unallocated). */
  private l2OffsetAt(i: number): number {
    if (i * 8 >= this.l1.length) return 0;
    const hi = u32(this.l1, i * 8);
    const lo = u32(this.l1, i * 8 + 4);
    const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
    if (off !== 0 && off % this.cs !== 0)
      throw new Qcow2FormatError(
        `L2 table offset ${hexAlt(off)} unaligned (L1 index: ${hexAlt(i)})`,
        `${this.l1Name}[${i}]`,
        hexAlt(off),
      );
    return off;
  }

  /** A run of unallocated L1 entries (no L2 table): extends over following empty L1 entries. */
  private unallocatedRun(off: number, limit: number, l1Index: number, coverage: number, max: number): Segment {
    const end = this.emptyL1RunEnd(l1Index);
    const tableEntries = this.l1.length / 8;
    const len = end >= tableEntries ? max : Math.max(limit, Math.min(max, end * coverage - off));
    return { kind: SegKind.Unallocated, length: len, host: -1, file: undefined };
  }

  /** Last answer of emptyL1RunEnd: entries [from, to) have no L2 table. */
  private emptyRun = { from: -1, to: -1 };

  /**
   * First L1 index after `i` that has an L2 table (the table's length when none). Remembered, so
   * that walking a long empty run piece by piece (as the layers below answer) stays linear.
   */
  private emptyL1RunEnd(i: number): number {
    if (i >= this.emptyRun.from && i < this.emptyRun.to) return this.emptyRun.to;
    const n = this.l1.length / 8;
    let j = i + 1;
    // Any offset bit counts as "has a table"; its validity is checked when it is reached.
    while (
      j < n &&
      (u32(this.l1, j * 8) & C.L1E_OFFSET_MASK_HI) === 0 &&
      (u32(this.l1, j * 8 + 4) & C.L1E_OFFSET_MASK_LO) === 0
    )
      j++;
    this.emptyRun = { from: i, to: j };
    return j;
  }

  private async loadL2(l2Offset: number, l1Index: number): Promise<Uint8Array> {
    const hit = this.l2Cache.get(l2Offset);
    if (hit) {
      // Refresh LRU position.
      this.l2Cache.delete(l2Offset);
      this.l2Cache.set(l2Offset, hit);
      return hit;
    }
    if (l2Offset >= this.image.fileSize)
      throw new Qcow2FormatError(
        `L2 table offset ${hexAlt(l2Offset)} beyond end of file (L1 index: ${hexAlt(l1Index)})`,
        `${this.l1Name}[${l1Index}]`,
        hexAlt(l2Offset),
      );
    const table = await readPadded(this.image.io, l2Offset, this.cs);
    if (this.l2Cache.size >= this.l2CacheMax) {
      const oldest = this.l2Cache.keys().next().value;
      if (oldest !== undefined) this.l2Cache.delete(oldest);
    }
    this.l2Cache.set(l2Offset, table);
    return table;
  }

  /** Standard 8-byte entries: group consecutive clusters of one type (host-contiguous when mapped). */
  private standardRun(
    l2: Uint8Array,
    l2Offset: number,
    first: number,
    inCluster: number,
    off: number,
    limit: number,
  ): Segment {
    const cs = this.cs;
    const t = this.classify(l2, l2Offset, first, off - inCluster);
    const seg = this.segmentFor(t, inCluster, off - inCluster);
    let len = cs - inCluster;
    if (t.kind !== SegKind.Compressed) {
      let i = first + 1;
      while (len < limit && i < this.l2Entries) {
        const n = this.classify(l2, l2Offset, i, off - inCluster + (i - first) * cs);
        if (n.kind !== t.kind || n.hostCluster !== (t.hostCluster < 0 ? -1 : t.hostCluster + (i - first) * cs)) break;
        len += cs;
        i++;
      }
    }
    seg.length = Math.min(len, limit);
    return seg;
  }

  /** Extended 16-byte entries: runs of subclusters of one type, across clusters when contiguous. */
  private extendedRun(
    l2: Uint8Array,
    l2Offset: number,
    first: number,
    inCluster: number,
    off: number,
    limit: number,
  ): Segment {
    const cs = this.cs;
    const sc = cs / C.SUBCLUSTERS_PER_CLUSTER;
    const guestCluster = off - inCluster;
    const t = this.classify(l2, l2Offset, first, guestCluster);
    if (t.kind === SegKind.Compressed) {
      const seg = this.segmentFor(t, inCluster, guestCluster);
      seg.length = Math.min(cs - inCluster, limit);
      return seg;
    }
    let sub = Math.floor(inCluster / sc);
    const kind = this.subKind(l2, l2Offset, first, t, sub);
    const seg = this.segmentFor({ ...t, kind }, inCluster, guestCluster);
    let len = (sub + 1) * sc - inCluster;
    let i = first;
    let cur = t;
    for (;;) {
      sub++;
      if (sub === C.SUBCLUSTERS_PER_CLUSTER) {
        i++;
        if (i >= this.l2Entries || len >= limit) break;
        const n = this.classify(l2, l2Offset, i, guestCluster + (i - first) * cs);
        const wantHost = t.hostCluster < 0 ? -1 : t.hostCluster + (i - first) * cs;
        if (n.kind === SegKind.Compressed || n.hostCluster !== wantHost) break;
        cur = n;
        sub = 0;
      }
      if (len >= limit) break;
      if (this.subKind(l2, l2Offset, i, cur, sub) !== kind) break;
      len += sc;
    }
    seg.length = Math.min(len, limit);
    return seg;
  }

  /** Subcluster state from the bitmap (QEMU qcow2_get_subcluster_type). */
  private subKind(l2: Uint8Array, l2Offset: number, index: number, t: Classified, sub: number): SegKind {
    const zeroBits = u32(l2, index * 16 + 8);
    const allocBits = u32(l2, index * 16 + 12);
    const bit = 1 << sub;
    if (t.hostCluster >= 0) {
      if ((zeroBits & allocBits) !== 0) throw this.invalidEntry(l2Offset, index);
      if (zeroBits & bit) return SegKind.Zero;
      if (allocBits & bit) return SegKind.Data;
      return SegKind.Unallocated;
    }
    if (allocBits !== 0) throw this.invalidEntry(l2Offset, index);
    return zeroBits & bit ? SegKind.Zero : SegKind.Unallocated;
  }

  private invalidEntry(l2Offset: number, index: number): Qcow2FormatError {
    return new Qcow2FormatError(
      `Invalid cluster entry found  (L2 offset: ${hexAlt(l2Offset)}, L2 index: ${hexAlt(index)})`,
      `l2_table@${hexAlt(l2Offset)}[${index}]`,
      'subcluster bitmap',
    );
  }

  /**
   * Classify entry `index` (QEMU's qcow2_get_cluster_type plus the checks of qcow2_get_host_offset).
   * For standard entries the kind is final; for extended ones Data/Unallocated only says whether a
   * host cluster is attached (the bitmap decides per subcluster).
   */
  private classify(l2: Uint8Array, l2Offset: number, index: number, guestCluster: number): Classified {
    const e = index * (this.extL2 ? 16 : 8);
    const hi = u32(l2, e);
    const lo = u32(l2, e + 4);
    const field = `l2_table@${hexAlt(l2Offset)}[${index}]`;
    if (hi & C.OFLAG_COMPRESSED_HI) {
      if (this.external)
        throw new Qcow2FormatError(
          `Compressed cluster entry found in image with external data file (L2 offset: ${hexAlt(l2Offset)}, L2 index: ${hexAlt(index)})`,
          field,
          entryHex(hi, lo),
        );
      return { kind: SegKind.Compressed, hostCluster: -1, hi, lo };
    }
    const host = (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
    let kind: SegKind;
    let mapped = host !== 0;
    if (!this.extL2 && lo & C.OFLAG_ZERO_LO) {
      if (this.v2)
        throw new Qcow2FormatError(
          `Zero cluster entry found in pre-v3 image (L2 offset: ${hexAlt(l2Offset)}, L2 index: ${hexAlt(index)})`,
          field,
          entryHex(hi, lo),
        );
      kind = SegKind.Zero;
    } else if (!mapped) {
      if (this.external && hi & C.OFLAG_COPIED_HI) {
        kind = SegKind.Data;
        mapped = true;
      } else {
        kind = SegKind.Unallocated;
      }
    } else {
      kind = SegKind.Data;
    }
    if (!mapped) return { kind, hostCluster: -1, hi, lo };
    if (host % this.cs !== 0)
      throw new Qcow2FormatError(
        `Cluster allocation offset ${hexAlt(host)} unaligned (L2 offset: ${hexAlt(l2Offset)}, L2 index: ${hexAlt(index)})`,
        field,
        entryHex(hi, lo),
      );
    if (this.external && host !== guestCluster)
      throw new Qcow2FormatError(
        `External data file host cluster offset ${hexAlt(host)} does not match guest cluster offset: ${hexAlt(guestCluster)}, L2 index: ${hexAlt(index)})`,
        field,
        entryHex(hi, lo),
      );
    return { kind, hostCluster: host, hi, lo };
  }

  private segmentFor(t: Classified, inCluster: number, guestCluster: number): Segment {
    if (t.kind === SegKind.Compressed) {
      return {
        kind: SegKind.Compressed,
        length: 0,
        host: -1,
        file: this.image.io,
        compressed: decodeCompressed(t.hi, t.lo, this.image.geo),
        clusterStart: guestCluster,
      };
    }
    const seg: Segment = {
      kind: t.kind,
      length: 0,
      host: t.hostCluster < 0 ? -1 : t.hostCluster + inCluster,
      file: t.hostCluster < 0 ? undefined : this.dataIO,
    };
    if (this.encrypted && t.kind === SegKind.Data) seg.encrypted = true;
    return seg;
  }
}

interface Classified {
  kind: SegKind;
  /** Host cluster offset, or -1 when the entry maps none. */
  hostCluster: number;
  hi: number;
  lo: number;
}

function entryHex(hi: number, lo: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;
}
