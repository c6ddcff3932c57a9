// Small random-access helpers over the damaged file: read a table cluster, list an L2's targets,
// read the refcount of a cluster when the refcount structure survives.
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { getRefcount } from '../format/refcount.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';

/** A bounded cache of clusters read from the image (table clusters are re-read often). */
export class ClusterCache {
  private map = new Map<number, Uint8Array>();
  constructor(
    private readonly io: PositionalIO,
    private readonly clusterSize: number,
    private readonly max = 512,
  ) {}

  async get(offset: number): Promise<Uint8Array> {
    let b = this.map.get(offset);
    if (b) return b;
    b = await readPadded(this.io, offset, this.clusterSize);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as number);
    this.map.set(offset, b);
    return b;
  }
}

/** Standard target offset of a 64-bit entry, 0 for empty/compressed/implausible entries. */
export function standardTarget(buf: Uint8Array, p: number): number {
  const hi = u32(buf, p);
  const lo = u32(buf, p + 4);
  if (hi & C.OFLAG_COMPRESSED_HI) return 0;
  if ((hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & C.L2E_STD_RESERVED_MASK_LO) !== 0) return 0;
  return (hi & C.L2E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
}

/** Is this 64-bit L1 entry well formed (reserved bits clear, aligned offset or zero)? */
export function l1EntryPlausible(buf: Uint8Array, p: number, clusterSize: number, limit: number): boolean {
  const hi = u32(buf, p);
  const lo = u32(buf, p + 4);
  if ((hi & C.L1E_RESERVED_MASK_HI) !== 0 || (lo & C.L1E_RESERVED_MASK_LO) !== 0) return false;
  const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
  return off % clusterSize === 0 && off < limit;
}

export function l1Target(buf: Uint8Array, p: number): number {
  const hi = u32(buf, p);
  const lo = u32(buf, p + 4);
  return (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
}

/** Refcounts from a surviving refcount table; undefined answers mean "cannot tell". */
export class RefcountProbe {
  private blocks = new Map<number, Uint8Array | null>();
  constructor(
    private readonly io: PositionalIO,
    private readonly reftable: Uint8Array,
    private readonly clusterSize: number,
    private readonly order: number,
    private readonly fileSize: number,
    private readonly isRefblock: (offset: number) => boolean,
  ) {}

  async refcount(clusterIndex: number): Promise<number | undefined> {
    const entries = (this.clusterSize * 8) >> this.order;
    const rti = Math.floor(clusterIndex / entries);
    if ((rti + 1) * 8 > this.reftable.length) return undefined;
    const off = standardTargetAny(this.reftable, rti * 8);
    if (off === 0) return 0;
    if (off % this.clusterSize !== 0 || off >= this.fileSize || !this.isRefblock(off)) return undefined;
    let b = this.blocks.get(off);
    if (b === undefined) {
      b = await readPadded(this.io, off, this.clusterSize);
      if (this.blocks.size > 64) this.blocks.clear();
      this.blocks.set(off, b);
    }
    return b ? getRefcount(b, clusterIndex % entries, this.order) : undefined;
  }
}

function standardTargetAny(buf: Uint8Array, p: number): number {
  const hi = u32(buf, p);
  const lo = u32(buf, p + 4);
  if (lo & C.REFT_RESERVED_MASK_LO) return -1;
  return hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
}
