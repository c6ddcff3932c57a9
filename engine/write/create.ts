// Create a new, empty qcow2 image with QEMU's layout: header (cluster 0), refcount table,
// refcount block(s), active L1 table. Everything else is written and flushed before the header,
// so a crash during creation leaves a file that is not (yet) a qcow2 image, never a broken one.
import * as C from '../format/constants.js';
import { putU32, putU64 } from '../format/bytes.js';
import { setRefcount } from '../format/refcount.js';
import type { PositionalIO } from '../io/positional-io.js';
import { WriteError } from './write-error.js';

export interface CreateOptions {
  /** Virtual size in bytes (a multiple of 512). */
  size: number;
  /** log2 of the cluster size, 9..21. Default 16 (64 KiB). */
  clusterBits?: number;
  /** log2 of the refcount width in bits, 0..6. Default 4 (16 bits). */
  refcountOrder?: number;
  /** 2 (compat=0.10) or 3 (compat=1.1, default). */
  version?: 2 | 3;
  /** Set the lazy-refcounts compatible feature bit (v3 only). */
  lazyRefcounts?: boolean;
}

const usage = (reason: string): never => {
  throw new WriteError('create', reason, { usage: true });
};

export async function createImage(io: PositionalIO, opts: CreateOptions): Promise<void> {
  const cb = opts.clusterBits ?? 16;
  const order = opts.refcountOrder ?? 4;
  const version = opts.version ?? 3;
  if (!Number.isInteger(cb) || cb < C.MIN_CLUSTER_BITS || cb > C.MAX_CLUSTER_BITS)
    usage(`cluster_bits ${cb} outside ${C.MIN_CLUSTER_BITS}..${C.MAX_CLUSTER_BITS}`);
  if (!Number.isInteger(order) || order < 0 || order > C.MAX_REFCOUNT_ORDER)
    usage(`refcount_order ${order} outside 0..6`);
  if (version === 2 && order !== 4) usage('version 2 images have 16-bit refcounts only');
  if (version === 2 && opts.lazyRefcounts) usage('lazy refcounts need version 3');
  if (!Number.isSafeInteger(opts.size) || opts.size < 0 || opts.size % C.SECTOR_SIZE !== 0)
    usage(`size ${opts.size} is not a multiple of 512`);
  const cs = 2 ** cb;
  const l2Entries = cs / C.L2_ENTRY_SIZE_STD;
  const l1Size = Math.ceil(opts.size / (cs * l2Entries));
  if (l1Size * 8 > C.QCOW_MAX_L1_SIZE)
    usage(`size ${opts.size} needs an L1 table larger than ${C.QCOW_MAX_L1_SIZE} bytes`);
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const E = (cs * 8) / 2 ** order;
  // Header, reftable, refblocks, L1: the refblocks must cover all of it (fixed point).
  let blocks = 1;
  let rtClusters = 1;
  for (;;) {
    const total = 1 + rtClusters + blocks + l1Clusters;
    const nb = Math.ceil(total / E);
    const nrt = Math.ceil((nb * 8) / cs);
    if (nb === blocks && nrt === rtClusters) break;
    blocks = nb;
    rtClusters = nrt;
  }
  const rtOff = cs;
  const rbOff = rtOff + rtClusters * cs;
  const l1Off = rbOff + blocks * cs;
  const total = 1 + rtClusters + blocks + l1Clusters;

  const rb = new Uint8Array(blocks * cs);
  for (let c = 0; c < total; c++)
    setRefcount(rb.subarray(Math.floor(c / E) * cs, Math.floor(c / E) * cs + cs), c % E, order, 1);
  const rt = new Uint8Array(rtClusters * cs);
  for (let i = 0; i < blocks; i++) putU64(rt, i * 8, rbOff + i * cs);

  await io.truncate(0);
  await io.write(rtOff, rt);
  await io.write(rbOff, rb);
  // The L1 table as QEMU writes it: just its entries (the file ends there; the rest reads as zeros).
  if (l1Size > 0) await io.write(l1Off, new Uint8Array(l1Size * 8));
  await io.flush();
  await io.write(
    0,
    encodeNewHeader({
      version,
      cb,
      size: opts.size,
      l1Size,
      l1Off,
      rtOff,
      rtClusters,
      order,
      lazy: !!opts.lazyRefcounts,
      cs,
    }),
  );
  await io.flush();
}

function encodeNewHeader(p: {
  version: 2 | 3;
  cb: number;
  size: number;
  l1Size: number;
  l1Off: number;
  rtOff: number;
  rtClusters: number;
  order: number;
  lazy: boolean;
  cs: number;
}): Uint8Array {
  const h = new Uint8Array(p.cs);
  putU32(h, C.HDR.magic, C.QCOW2_MAGIC);
  putU32(h, C.HDR.version, p.version);
  putU32(h, C.HDR.clusterBits, p.cb);
  putU64(h, C.HDR.size, p.size);
  putU32(h, C.HDR.l1Size, p.l1Size);
  putU64(h, C.HDR.l1TableOffset, p.l1Off);
  putU64(h, C.HDR.refcountTableOffset, p.rtOff);
  putU32(h, C.HDR.refcountTableClusters, p.rtClusters);
  if (p.version === 2) return h;
  putU64(h, C.HDR.compatibleFeatures, p.lazy ? C.COMPAT_LAZY_REFCOUNTS : 0n);
  putU32(h, C.HDR.refcountOrder, p.order);
  putU32(h, C.HDR.headerLength, C.HEADER_V3_QEMU_LENGTH);
  // Feature name table, as QEMU writes it, then the end marker.
  let off = C.HEADER_V3_QEMU_LENGTH;
  const names = C.FEATURE_NAMES;
  if (off + 8 + names.length * C.FEATURE_TABLE_ENTRY_SIZE + 8 <= p.cs) {
    putU32(h, off, C.EXT_FEATURE_TABLE);
    putU32(h, off + 4, names.length * C.FEATURE_TABLE_ENTRY_SIZE);
    off += 8;
    for (const f of names) {
      h[off] = f.type;
      h[off + 1] = f.bit;
      h.set(new TextEncoder().encode(f.name).subarray(0, 46), off + 2);
      off += C.FEATURE_TABLE_ENTRY_SIZE;
    }
  }
  putU32(h, off, C.EXT_END); // end marker (8 zero bytes)
  return h;
}
