// Reading a reconstructed guest disk: walk the placed L2 tables in guest order, read data clusters
// (coalescing contiguous host runs into large reads), decompress compressed ones, fill unallocated
// ranges from the backing disk, and account for every guest byte (recovered, zero, backing, lost).
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { classifyL2, ClusterType, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import type { Geometry } from '../format/header.js';
import type { PositionalIO } from '../io/positional-io.js';
import { CancelToken, type ProgressSink } from '../base/task-control.js';
import { decompressCluster } from '../image/compressed.js';
import { placedRanges } from './placement-ranges.js';
import { readInto, uninitialized } from './bulk-read.js';
import { isZero } from '../format/cluster-content.js';
import { entryEmpty, UNPLACED_DATA_REASON } from './unplaced-data.js';
import type { GuestView, LostRange, Reconstruction, SharedEntry, ViewReport } from './types.js';
import { lostByIndex } from './lost-index.js';

/** A guest disk that unallocated clusters read from. `missing`: named but not found. */
export interface BackingDisk {
  name: string;
  missing: boolean;
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Receives the guest disk cluster by cluster, in increasing order; null, or a cluster never
 * passed (long unallocated or lost ranges are skipped), reads as zeros. `data` is the reader's
 * buffer, valid until the returned promise resolves: a sink that keeps it copies it. */
export type ClusterSink = (guestCluster: number, data: Uint8Array | null) => Promise<void>;

const MAX_RUN = 8 * 1024 * 1024;
const UNPLACED =
  'possibly lost: the L1 says unallocated, but live L2 tables referenced by no L1 map data that belongs in one of these ranges (see the warnings; --place-orphans places them by guess)';
const GUESS_HOME =
  'possibly lost: L2 tables were placed into the free L1 slots by guess, and one of them may belong here instead';
const STALE =
  "possibly lost: a live L2 table referenced by no L1 is a copy-on-write copy of this range's table and maps other data here — the disk's newer data is likely there, not the older table's content (see the warnings; --lost-found copies it out)";
const BACKING_UNKNOWN =
  'unallocated: the header is lost, and with it the name of any backing file this range would read from (written as zeros; pass --backing FILE, or --no-backing if the image had none)';
const GUESSED_END =
  'beyond the guessed end of the disk: its size was lost with the header; if the disk was larger, what it held past here (from a backing file, if it had one) is not in the output (pass --virtual-size, and --backing FILE)';
const MAX_LOST_RANGES = 10_000;

export class ViewReader {
  readonly cs: number;
  readonly l2Entries: number;
  private readonly step: number;
  private readonly geo: Geometry;
  private l2Cache = new Map<number, Uint8Array>();
  /** Runs of data clusters are read into these in turn: one is read ahead while the other is sunk. */
  private readonly ring: Uint8Array[] = [];
  private turn = 0;

  constructor(
    private readonly io: PositionalIO,
    private readonly fileSize: number,
    private readonly recon: Reconstruction,
    readonly view: GuestView,
    private readonly backing?: BackingDisk,
  ) {
    this.cs = recon.clusterSize;
    this.step = recon.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
    this.l2Entries = this.cs / this.step;
    this.geo = {
      clusterBits: recon.clusterBits,
      clusterSize: this.cs,
      extendedL2: recon.extendedL2,
      l2EntrySize: this.step,
      l2Entries: this.l2Entries,
      l2Bits: Math.log2(this.l2Entries),
      refcountOrder: 4,
      refcountBits: 16,
      refcountBlockEntries: 0,
      refcountBlockBits: 0,
      l1EntriesNeeded: 0,
      l1Coverage: this.cs * this.l2Entries,
      subclusterSize: recon.extendedL2 ? this.cs / C.SUBCLUSTERS_PER_CLUSTER : this.cs,
      csizeShift: 62 - (recon.clusterBits - 8),
      csizeMask: 2 ** (recon.clusterBits - 8) - 1,
    };
  }

  get size(): number {
    return this.view.virtualSize;
  }

  /** Stream the whole disk into `sink` and return what was recovered, lost and guessed. */
  async export(
    sink: ClusterSink,
    progress?: ProgressSink,
    cancel: CancelToken = CancelToken.none,
  ): Promise<ViewReport> {
    const v = this.view;
    const acc = new Accounting(v.virtualSize);
    const total = Math.max(1, Math.ceil(v.virtualSize / this.cs));
    const l1Count = Math.ceil(total / this.l2Entries);
    const stage = `writing ${v.kind === 'active' ? 'active disk' : `snapshot ${v.id}`}`;
    let next = 0;
    const step = Math.max(1, Math.floor(total / 200));
    const tracked: ClusterSink = async (g, d) => {
      if (g >= next) {
        cancel.throwIfCancelled();
        progress?.({ fraction: g / total, stage });
        next = g + step;
      }
      await sink(g, d);
    };
    for (let i = 0; i < l1Count; i++) {
      cancel.throwIfCancelled();
      progress?.({ fraction: (i * this.l2Entries) / total, stage });
      await this.emitIndex(i, progress ? tracked : sink, acc);
    }
    progress?.({ fraction: 1, stage: 'done' });
    this.noteGuessedEnd(acc);
    // The left-out tables' data is lost from this disk, wherever it belonged.
    acc.bytes.lost += v.unplaced?.bytes ?? 0;
    // Unmapped live data may be what the ranges already counted lost held: counted once, at least.
    if (v.unplacedData) acc.bytes.lost = Math.max(acc.bytes.lost, v.unplacedData.bytes);
    const placedL2 = [...v.l2.values()].sort((a, b) => a.l1Index - b.l1Index);
    const bytes = acc.bytes;
    return {
      kind: v.kind,
      id: v.id,
      name: v.name,
      virtualSize: v.virtualSize,
      l1Source: v.l1Source,
      l1Offset: v.l1Offset,
      l2Tables: placedL2,
      bytes,
      lost: acc.lost,
      confidence: bytes.recovered === 0 ? 1 : 1 - bytes.guessed / bytes.recovered,
      placement: placedRanges(v, this.cs * this.l2Entries),
    };
  }

  /**
   * The header, and with it the disk's size and any backing file's name, is lost: the size is a
   * guess from the last mapped cluster. Past it the disk may go on, reading from a backing file
   * nobody can name: that tail is named (not counted: its size is unknown), up to the most a qcow2
   * L1 table can address.
   */
  private noteGuessedEnd(acc: Accounting): void {
    const v = this.view;
    if (v.kind !== 'active' || this.recon.virtualSizeSource !== 'guessed' || !this.recon.backingUnknown) return;
    const reach = Math.min((C.QCOW_MAX_L1_SIZE / 8) * this.geo.l1Coverage, Number.MAX_SAFE_INTEGER);
    const end = Math.floor(reach / this.cs) * this.cs;
    if (end > v.virtualSize && acc.lost.length < MAX_LOST_RANGES)
      acc.lost.push({ start: v.virtualSize, end, reason: GUESSED_END });
  }

  /** The guest clusters under L1 index i, in order. */
  private async emitIndex(
    i: number,
    sink: ClusterSink,
    acc: Accounting,
    jFrom = 0,
    jTo = this.l2Entries,
  ): Promise<void> {
    const v = this.view;
    const cs = this.cs;
    const bytes = acc.bytes;
    const totalClusters = Math.ceil(v.virtualSize / cs);
    const clusterBytes = (g: number): number => Math.min(cs, v.virtualSize - g * cs);
    const g0 = i * this.l2Entries;
    const n = Math.min(jTo, totalClusters - g0);
    if (n <= jFrom) return;
    const place = v.l2.get(i);
    if (!place) {
      const l = lostByIndex(v.lostL2).get(i);
      if (l) {
        acc.addLost((g0 + jFrom) * cs, (g0 + n) * cs, l.reason);
      } else {
        await this.emitUnallocated(g0 + jFrom, n - jFrom, sink, acc);
        if (v.guessHomes?.has(i)) acc.addLost((g0 + jFrom) * cs, (g0 + n) * cs, GUESS_HOME, false);
        else if (v.unplaced) acc.addLost((g0 + jFrom) * cs, (g0 + n) * cs, UNPLACED, false);
        else if (v.unplacedData) acc.addLost((g0 + jFrom) * cs, (g0 + n) * cs, UNPLACED_DATA_REASON, false);
      }
      return;
    }
    const guessed = place.confidence < 1;
    const l1Copy = v.l1Copies?.get(i);
    const stale = v.stale?.get(i);
    const l2 = await this.readL2(place.host);
    let j = jFrom;
    // The read of the next run of data clusters, started while this one goes to the sink.
    let ahead: { j: number; data: Promise<Uint8Array> } | undefined;
    try {
      while (j < n) {
        const g = g0 + j;
        const hi = u32(l2, j * this.step);
        const lo = u32(l2, j * this.step + 4);
        const type = classifyL2(hi, lo, this.recon.extendedL2, false);
        const shared = type === ClusterType.Unallocated ? v.shared?.get(g) : undefined;
        if (shared && (!this.recon.extendedL2 || u32(l2, j * this.step + 12) === 0)) {
          await this.emitShared(g, shared, clusterBytes(g), sink, acc);
          j++;
          continue;
        }
        if (stale?.has(j)) {
          await sink(g, null);
          acc.addLost(g * cs, g * cs + clusterBytes(g), STALE, false);
          j++;
          continue;
        }
        if (l1Copy && entryEmpty(l2, j, this.step)) {
          await sink(g, null);
          acc.addLost(g * cs, g * cs + clusterBytes(g), l1Copy);
          j++;
          continue;
        }
        if (this.recon.extendedL2 && type !== ClusterType.Compressed) {
          await this.emitExtended(g, l2, j, clusterBytes(g), sink, acc, guessed);
          j++;
          continue;
        }
        if (type === ClusterType.Unallocated) {
          let k = j + 1;
          while (
            k < n &&
            u32(l2, k * this.step) === 0 &&
            u32(l2, k * this.step + 4) === 0 &&
            !v.shared?.has(g0 + k) &&
            !stale?.has(k)
          )
            k++;
          await this.emitUnallocated(g, k - j, sink, acc);
          if (v.unplacedData) acc.addLost(g * cs, (g0 + k) * cs, UNPLACED_DATA_REASON, false);
          j = k;
          continue;
        }
        if (type === ClusterType.ZeroPlain || type === ClusterType.ZeroAlloc) {
          await sink(g, null);
          bytes.zero += clusterBytes(g);
          j++;
          continue;
        }
        if (type === ClusterType.Compressed) {
          const d = decodeCompressed(hi, lo, this.geo);
          const onMeta = this.metadataIn(d.offset, d.size);
          const data =
            d.offset < this.fileSize && !onMeta
              ? decompressOrLost(
                  await this.io.read(d.offset, Math.min(d.size, this.fileSize - d.offset)),
                  cs,
                  this.recon.compressionType,
                )
              : undefined;
          if (data) {
            await sink(g, isAllZero(data) ? null : data);
            bytes.recovered += clusterBytes(g);
            bytes.compressed += clusterBytes(g);
            if (guessed) bytes.guessed += clusterBytes(g);
          } else {
            await sink(g, null);
            acc.addLost(
              g * cs,
              g * cs + cs,
              onMeta
                ? `the compressed cluster's entry points into the ${onMeta}: not guest data`
                : d.offset + d.size > this.fileSize
                  ? 'compressed cluster beyond end of file (truncated)'
                  : `compressed cluster at 0x${d.offset.toString(16)} does not decompress`,
            );
          }
          j++;
          continue;
        }
        // Normal: coalesce host-contiguous clusters into one read.
        const host = l2Offset(hi, lo);
        const k = this.runEnd(l2, j, n, host);
        const data = await (ahead?.j === j ? ahead.data : this.readRun(host, k - j));
        ahead = this.readAhead(l2, k, n);
        for (let r = 0; r < k - j; r++) {
          const gg = g + r;
          const piece = data.subarray(r * cs, r * cs + cs);
          const want = clusterBytes(gg);
          const onMeta = this.metadataIn(host + r * cs, cs);
          if (host % cs !== 0) {
            await sink(gg, null);
            acc.addLost(gg * cs, gg * cs + cs, 'L2 entry has a misaligned offset');
          } else if (onMeta) {
            await sink(gg, null);
            acc.addLost(gg * cs, gg * cs + cs, `the L2 entry points at the ${onMeta}: not guest data`);
          } else if (piece.length >= want) {
            await sink(gg, isAllZero(piece) ? null : piece);
            bytes.recovered += want;
            if (guessed) bytes.guessed += want;
          } else {
            // Cut by the end of the file: what precedes the cut is real, the rest is lost.
            await sink(gg, piece.length && !isAllZero(piece) ? padCluster(piece, cs) : null);
            bytes.recovered += piece.length;
            if (guessed) bytes.guessed += piece.length;
            acc.addLost(gg * cs + piece.length, gg * cs + cs, 'data cluster beyond end of file (truncated)');
          }
        }
        j = k;
      }
    } finally {
      // Nothing left reading when the caller closes the file.
      await ahead?.data.catch(() => undefined);
    }
  }

  /** End (exclusive) of the run of host-contiguous normal clusters that starts at entry j. */
  private runEnd(l2: Uint8Array, j: number, n: number, host: number): number {
    const cs = this.cs;
    let k = j + 1;
    while (k < n && (k - j) * cs < MAX_RUN) {
      const hi = u32(l2, k * this.step);
      const lo = u32(l2, k * this.step + 4);
      if (classifyL2(hi, lo, false, false) !== ClusterType.Normal || l2Offset(hi, lo) !== host + (k - j) * cs) break;
      k++;
    }
    return k;
  }

  /** What the file holds of `clusters` clusters at `host` (nothing for a misaligned offset). */
  private async readRun(host: number, clusters: number): Promise<Uint8Array> {
    const avail = Math.max(0, Math.min(clusters * this.cs, this.fileSize - host));
    if (avail === 0 || host % this.cs !== 0) return new Uint8Array(0);
    // Reused buffers: a fresh one per read costs more in page faults than the read itself.
    const k = this.turn++ % 2;
    this.ring[k] ??= uninitialized(Math.ceil(MAX_RUN / this.cs) * this.cs);
    const buf = this.ring[k]!;
    return buf.subarray(0, await readInto(this.io, host, buf, avail));
  }

  /** Start reading the first run of normal clusters at or after entry `from` (standard L2 only). */
  private readAhead(l2: Uint8Array, from: number, n: number): { j: number; data: Promise<Uint8Array> } | undefined {
    if (this.recon.extendedL2) return undefined;
    for (let j = from; j < n; j++) {
      const hi = u32(l2, j * this.step);
      const lo = u32(l2, j * this.step + 4);
      if (classifyL2(hi, lo, false, false) !== ClusterType.Normal) continue;
      const host = l2Offset(hi, lo);
      const data = this.readRun(host, this.runEnd(l2, j, n, host) - j);
      // Awaited when its run comes (or in emitIndex's finally); this only keeps a failure from going unheard.
      data.catch(() => undefined);
      return { j, data };
    }
    return undefined;
  }

  /** An empty entry that held a cluster another disk still maps: read it back, or report the range lost. */
  private async emitShared(g: number, e: SharedEntry, want: number, sink: ClusterSink, acc: Accounting): Promise<void> {
    const cs = this.cs;
    let data: Uint8Array | undefined;
    if (e.compressed) {
      const d = decodeCompressed(e.compressed.hi, e.compressed.lo, this.geo);
      const ok = e.certain && !this.metadataIn(d.offset, d.size) && d.offset + d.size <= this.fileSize;
      data = ok ? decompressOrLost(await this.io.read(d.offset, d.size), cs, this.recon.compressionType) : undefined;
    } else if (e.certain && !this.metadataIn(e.host, cs) && e.host + cs <= this.fileSize)
      data = await this.io.read(e.host, cs);
    if (data && data.length >= want) {
      await sink(g, isAllZero(data) ? null : data);
      acc.bytes.recovered += want;
      if (e.compressed) acc.bytes.compressed += want;
    } else {
      await sink(g, null);
      acc.addLost(g * cs, g * cs + cs, e.evidence);
    }
  }

  /** Unallocated clusters: the backing disk's content, or zeros. */
  private async emitUnallocated(g0: number, n: number, sink: ClusterSink, acc: Accounting): Promise<void> {
    const cs = this.cs;
    const size = this.view.virtualSize;
    for (let k = 0; k < n; ) {
      const run = Math.min(n - k, Math.max(1, MAX_RUN / cs));
      const start = (g0 + k) * cs;
      const len = Math.min(run * cs, size - start);
      if (this.backing && !this.backing.missing) {
        const data = await this.backing.read(start, len);
        for (let r = 0; r < run; r++) {
          const piece = data.subarray(r * cs, r * cs + cs);
          await sink(g0 + k + r, isAllZero(piece) ? null : padCluster(piece, cs));
        }
        acc.bytes.backing += len;
      } else if (this.backing?.missing) {
        acc.bytes.backingMissing += len;
        acc.addLost(
          start,
          start + len,
          `unallocated: reads from the backing file ${this.backing.name}, missing`,
          false,
        );
      } else if (this.recon.backingUnknown) {
        acc.bytes.backingMissing += len;
        acc.addLost(start, start + len, BACKING_UNKNOWN, false);
      } else acc.bytes.zero += len;
      k += run;
    }
  }

  private async emitExtended(
    g: number,
    l2: Uint8Array,
    j: number,
    want: number,
    sink: ClusterSink,
    acc: Accounting,
    guessed: boolean,
  ): Promise<void> {
    const bytes = acc.bytes;
    const cs = this.cs;
    const hi = u32(l2, j * this.step);
    const lo = u32(l2, j * this.step + 4);
    const zeroBits = u32(l2, j * this.step + 8);
    const allocBits = u32(l2, j * this.step + 12);
    const host = l2Offset(hi, lo);
    const sub = cs / C.SUBCLUSTERS_PER_CLUSTER;
    const out = new Uint8Array(cs);
    const onMeta = allocBits !== 0 ? this.metadataIn(host, cs) : undefined;
    const data = host > 0 && host < this.fileSize && !onMeta ? await this.io.read(host, cs) : new Uint8Array(0);
    const backing = this.backing && !this.backing.missing ? await this.backing.read(g * cs, cs) : undefined;
    for (let s = 0; s < C.SUBCLUSTERS_PER_CLUSTER; s++) {
      const a = s * sub;
      if (a >= want) break;
      const b = Math.min(a + sub, want);
      if ((allocBits >>> s) & 1) {
        if (data.length >= b) {
          out.set(data.subarray(a, b), a);
          bytes.recovered += b - a;
          if (guessed) bytes.guessed += b - a;
        } else
          acc.addLost(
            g * cs + a,
            g * cs + b,
            onMeta
              ? `the L2 entry points at the ${onMeta}: not guest data`
              : 'data cluster beyond end of file (truncated)',
          );
      } else if ((zeroBits >>> s) & 1) bytes.zero += b - a;
      else if (backing) {
        out.set(backing.subarray(a, b), a);
        bytes.backing += b - a;
      } else if (this.backing?.missing) {
        bytes.backingMissing += b - a;
        acc.addLost(
          g * cs + a,
          g * cs + b,
          `unallocated: reads from the backing file ${this.backing.name}, missing`,
          false,
        );
      } else if (this.recon.backingUnknown) {
        bytes.backingMissing += b - a;
        acc.addLost(g * cs + a, g * cs + b, BACKING_UNKNOWN, false);
      } else bytes.zero += b - a;
    }
    await sink(g, isAllZero(out) ? null : out);
    if (this.view.unplacedData && entryEmpty(l2, j, this.step))
      acc.addLost(g * cs, g * cs + cs, UNPLACED_DATA_REASON, false);
  }

  /** What metadata the host bytes [offset, offset + length) fall on, if surviving structures prove any. */
  private metadataIn(offset: number, length: number): string | undefined {
    const m = this.recon.metadata;
    if (!m?.size) return undefined;
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.cs);
    for (let c = Math.floor(offset / this.cs); c <= last; c++) {
      const what = m.get(c);
      if (what) return what;
    }
    return undefined;
  }

  private async readL2(host: number): Promise<Uint8Array> {
    let b = this.l2Cache.get(host);
    if (b) return b;
    b = new Uint8Array(this.cs);
    b.set(await this.io.read(host, this.cs));
    if (this.l2Cache.size > 64) this.l2Cache.clear();
    this.l2Cache.set(host, b);
    return b;
  }

  /** Random guest reads (this disk as the backing of an overlay), one L1 range at a time. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const end = Math.min(offset + length, this.view.virtualSize);
    if (end <= offset) return out;
    const cs = this.cs;
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    const acc = new Accounting(this.view.virtualSize);
    const sink: ClusterSink = async (g, d) => {
      if (g < first || g > last || !d) return;
      const cStart = g * cs;
      const from = Math.max(cStart, offset);
      const to = Math.min(cStart + cs, end);
      out.set(d.subarray(from - cStart, to - cStart), from - offset);
    };
    const E = this.l2Entries;
    for (let i = Math.floor(first / E); i <= Math.floor(last / E); i++)
      await this.emitIndex(i, sink, acc, Math.max(0, first - i * E), Math.min(E, last - i * E + 1));
    return out;
  }
}

/** Byte accounting of one export. */
class Accounting {
  bytes = { recovered: 0, compressed: 0, zero: 0, backing: 0, backingMissing: 0, lost: 0, guessed: 0 };
  lost: LostRange[] = [];
  constructor(private readonly size: number) {}

  /** A lost guest range; `counted`: its bytes are lost from this file (not a missing backing file's). */
  addLost(start: number, end: number, reason: string, counted = true): void {
    end = Math.min(end, this.size);
    if (end <= start) return;
    if (counted) this.bytes.lost += end - start;
    const last = this.lost[this.lost.length - 1];
    if (last && last.end === start && last.reason === reason) last.end = end;
    else if (this.lost.length < MAX_LOST_RANGES) this.lost.push({ start, end, reason });
  }
}

export function isAllZero(b: Uint8Array): boolean {
  return isZero(b, 0, b.length);
}

function padCluster(piece: Uint8Array, cs: number): Uint8Array {
  if (piece.length === cs) return piece;
  const out = new Uint8Array(cs);
  out.set(piece);
  return out;
}

/** One cluster's data, or undefined when its stream does not yield a whole cluster by QEMU's rules. */
function decompressOrLost(input: Uint8Array, clusterSize: number, type: number | undefined): Uint8Array | undefined {
  try {
    return decompressCluster(input, { type: type ?? 'detect', clusterSize, lenient: false }).data;
  } catch {
    return undefined;
  }
}
