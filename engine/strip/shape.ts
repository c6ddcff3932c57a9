// Does a cluster's content look like the table a pointer says it is? A table of well-formed
// pointers or small refcounts reveals no guest content and is kept; text, patterns or random bytes
// reached through a damaged pointer are treated as guest data and dropped.
import * as C from '../format/constants.js';
import type { Geometry } from '../format/header.js';
import { getRefcount } from '../format/refcount.js';
import type { MetaKind } from './metadata-map.js';

/**
 * Kinds whose content is judged entry by entry: the tables reached through another table's entry.
 * The active L1 and the refcount table (named by the header, the most trusted pointer) are judged
 * too, but only dropped on clear evidence (see strip.ts); the other header-named structures are
 * kept as they are.
 */
export const SHAPED: ReadonlySet<MetaKind> = new Set<MetaKind>(['snapshot-l1', 'l2', 'refcount-block', 'bitmap-table']);

export interface ShapeContext {
  geo: Geometry;
  fileSize: number;
  nbSnapshots: number;
  /** For a refcount block: the first host cluster it describes. */
  firstCluster?: number;
}

/**
 * Count non-zero entries and malformed ones for `kind`. Strip keeps a cluster when at most half of
 * its non-zero entries are malformed: a real table damaged in a few entries passes, guest data fails
 * nearly every entry (and an all-zero cluster holds nothing to leak).
 */
export function countMalformed(
  kind: MetaKind,
  bytes: Uint8Array,
  ctx: ShapeContext,
): { nonzero: number; malformed: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { geo, fileSize } = ctx;
  const cs = geo.clusterSize;
  let nonzero = 0;
  let malformed = 0;
  const words = (stride: number, ok: (hi: number, lo: number, at: number) => boolean): void => {
    for (let at = 0; at + 8 <= bytes.length; at += stride) {
      const hi = view.getUint32(at);
      const lo = view.getUint32(at + 4);
      const bm = stride === 16 && at + 16 <= bytes.length ? view.getUint32(at + 8) | view.getUint32(at + 12) : 0;
      if (hi === 0 && lo === 0 && bm === 0) continue;
      nonzero++;
      if (!ok(hi, lo, at)) malformed++;
    }
  };
  // A pointer is plausible when it is cluster aligned (with its reserved bits clear, that alone
  // rules out all but about one random word in 2^14). Past-EOF pointers are damage, not data.
  const plausible = (hiMasked: number, loMasked: number): boolean => (hiMasked * 0x1_0000_0000 + loMasked) % cs === 0;
  switch (kind) {
    case 'l1':
    case 'snapshot-l1':
      words(
        8,
        (hi, lo) =>
          (hi & C.L1E_RESERVED_MASK_HI) === 0 &&
          (lo & C.L1E_RESERVED_MASK_LO) === 0 &&
          plausible(hi & C.L1E_OFFSET_MASK_HI, (lo & C.L1E_OFFSET_MASK_LO) >>> 0),
      );
      break;
    case 'l2':
      words(geo.l2EntrySize, (hi, lo, at) => {
        if (geo.extendedL2 && (view.getUint32(at + 8) & view.getUint32(at + 12)) !== 0) return false;
        if (hi & C.OFLAG_COMPRESSED_HI) {
          // Compressed: never COPIED, and the stream starts inside the file.
          const offBits = geo.csizeShift - 32;
          const off = (hi & (2 ** offBits - 1)) * 0x1_0000_0000 + (lo >>> 0);
          return (hi & C.OFLAG_COPIED_HI) === 0 && off < fileSize;
        }
        return (
          (hi & C.L2E_STD_RESERVED_MASK_HI) === 0 &&
          (lo & C.L2E_STD_RESERVED_MASK_LO) === 0 &&
          plausible(hi & C.L2E_OFFSET_MASK_HI, (lo & C.L2E_OFFSET_MASK_LO) >>> 0)
        );
      });
      break;
    case 'refcount-table':
      words(
        8,
        (hi, lo) =>
          (lo & C.REFT_RESERVED_MASK_LO) === 0 && hi < 0x200000 && plausible(hi, (lo & C.REFT_OFFSET_MASK_LO) >>> 0),
      );
      break;
    case 'bitmap-table':
      words(
        8,
        (hi, lo) =>
          (hi & C.BME_RESERVED_MASK_HI) === 0 &&
          (lo & C.BME_RESERVED_MASK_LO) === 0 &&
          plausible(hi & C.BME_OFFSET_MASK_HI, (lo & C.BME_OFFSET_MASK_LO) >>> 0),
      );
      break;
    case 'refcount-block': {
      // Real refcounts are small (one per snapshot plus the active state, with room for sharing),
      // and clusters past the end of the file have none.
      const limit = 256 + ctx.nbSnapshots;
      const fileClusters = Math.ceil(fileSize / cs);
      const entries = Math.floor((bytes.length * 8) / geo.refcountBits);
      for (let i = 0; i < entries; i++) {
        const v = getRefcount(bytes, i, geo.refcountOrder);
        if (v === 0) continue;
        nonzero++;
        const beyond = ctx.firstCluster !== undefined && ctx.firstCluster + i > fileClusters;
        if (v > limit || beyond) malformed++;
      }
      break;
    }
    default:
      break;
  }
  return { nonzero, malformed };
}
