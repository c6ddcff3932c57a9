// Metadata overlap guard (QEMU's "cached" overlap-check template, qcow2.md §5.8): before the
// writer puts bytes somewhere, the target clusters must not hold metadata of another kind. Our
// allocator only hands out clusters with refcount 0, so a hit means the image was already
// inconsistent (a refcount too low, an entry pointing into metadata); writing would turn a
// detectable problem into destroyed metadata. The writer then refuses, as QEMU does.
import { u32 } from '../format/bytes.js';
import { l1Offset } from '../format/l2-entry.js';
import * as C from '../format/constants.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { Qcow2Header } from '../format/header.js';
import { Qcow2FormatError } from '../base/errors.js';

/** QEMU's names for the metadata kinds, as its "overlaps with ..." message prints them. */
export type MetadataKind =
  | 'qcow2_header'
  | 'active L1 table'
  | 'active L2 table'
  | 'refcount table'
  | 'refcount block'
  | 'snapshot table'
  | 'inactive L1 table';

export class OverlapError extends Error {
  constructor(
    readonly kind: MetadataKind,
    readonly offset: number,
  ) {
    super(`Preventing invalid write on metadata (overlaps with ${kind}) at 0x${offset.toString(16)}`);
    this.name = 'OverlapError';
  }
}

/** What the guard needs to know about the image, read when it (re)builds its map. */
export interface OverlapSource {
  readonly io: PositionalIO;
  readonly header: Qcow2Header;
  readonly clusterSize: number;
  /** Active L1 (raw). */
  readonly l1: Uint8Array;
  /** Refcount table (raw) and its offset. */
  readonly reftable: Uint8Array;
}

export class OverlapGuard {
  private map: Map<number, MetadataKind> | null = null;

  constructor(private readonly src: () => OverlapSource) {}

  /** Metadata moved or changed shape: rebuild the map before the next check. */
  invalidate(): void {
    this.map = null;
  }

  private async build(): Promise<Map<number, MetadataKind>> {
    const s = this.src();
    const cs = s.clusterSize;
    const h = s.header;
    const m = new Map<number, MetadataKind>();
    const range = (off: number, bytes: number, kind: MetadataKind): void => {
      if (bytes <= 0) return;
      for (let c = Math.floor(off / cs); c <= Math.floor((off + bytes - 1) / cs); c++) if (!m.has(c)) m.set(c, kind);
    };
    range(0, cs, 'qcow2_header');
    range(h.l1TableOffset, h.l1Size * 8, 'active L1 table');
    range(h.refcountTableOffset, s.reftable.length, 'refcount table');
    for (let i = 0; i < s.reftable.length / 8; i++) {
      const off = u32(s.reftable, i * 8) * 0x1_0000_0000 + ((u32(s.reftable, i * 8 + 4) & C.REFT_OFFSET_MASK_LO) >>> 0);
      if (off) range(off, cs, 'refcount block');
    }
    for (let i = 0; i < h.l1Size; i++) {
      const off = l1Offset(u32(s.l1, i * 8), u32(s.l1, i * 8 + 4));
      if (off) range(off, cs, 'active L2 table');
    }
    if (h.nbSnapshots > 0) {
      try {
        const img = await Qcow2Image.open(s.io);
        const { entries, byteLength } = await img.readSnapshots();
        range(h.snapshotsOffset, byteLength, 'snapshot table');
        for (const e of entries) range(e.l1TableOffset, e.l1Size * 8, 'inactive L1 table');
      } catch (e) {
        // A malformed snapshot table is the checker's business (guard what we know); I/O errors are reported.
        if (!(e instanceof Qcow2FormatError)) throw e;
      }
    }
    this.map = m;
    return m;
  }

  /** Throw an OverlapError if [offset, offset+length) touches metadata of a kind not in `allowed`. */
  async check(offset: number, length: number, allowed: readonly MetadataKind[] = []): Promise<void> {
    if (length <= 0) return;
    const m = this.map ?? (await this.build());
    const cs = this.src().clusterSize;
    for (let c = Math.floor(offset / cs); c <= Math.floor((offset + length - 1) / cs); c++) {
      const k = m.get(c);
      if (k !== undefined && !allowed.includes(k)) throw new OverlapError(k, c * cs);
    }
  }
}
