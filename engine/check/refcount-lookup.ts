// On-disk refcount of single clusters, with QEMU's failure semantics (qcow2_get_refcount): a
// refcount-table entry whose block offset is not cluster aligned makes the lookup fail (-EIO);
// blocks past end of file read as zeros. Blocks are cached (bounded).
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { getRefcount } from '../format/refcount.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';

export const LOOKUP_FAILED = -1;

export class RefcountLookup {
  private cache = new Map<number, Uint8Array>();
  /** Called once per failing reftable index the first time it fails. */
  onUnaligned?: (reftableIndex: number, blockOffset: number) => void;

  constructor(private readonly image: Qcow2Image) {}

  /** Reftable entry i as (offset with reserved bits masked, aligned?) or null when absent. */
  blockOffset(rtIndex: number): number {
    const rt = this.image.reftable;
    if (rtIndex * 8 >= rt.length) return 0;
    const hi = u32(rt, rtIndex * 8);
    const lo = u32(rt, rtIndex * 8 + 4);
    return hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
  }

  async get(cluster: number): Promise<number> {
    const geo = this.image.geo;
    const rtIndex = Math.floor(cluster / geo.refcountBlockEntries);
    const off = this.blockOffset(rtIndex);
    if (off === 0) return 0;
    if (off % geo.clusterSize !== 0) {
      this.onUnaligned?.(rtIndex, off);
      return LOOKUP_FAILED;
    }
    let block = this.cache.get(off);
    if (!block) {
      block =
        off >= this.image.fileSize || !Number.isSafeInteger(off)
          ? new Uint8Array(geo.clusterSize)
          : await readPadded(this.image.io, off, geo.clusterSize);
      if (this.cache.size >= 64) this.cache.clear();
      this.cache.set(off, block);
    }
    return getRefcount(block, cluster % geo.refcountBlockEntries, geo.refcountOrder);
  }
}
