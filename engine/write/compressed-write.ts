// Compressed guest writes: one whole cluster deflated into sectors packed into partly used host
// clusters (each use one reference on the host cluster, as in QEMU).
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { encodeCompressed } from '../format/l2-entry.js';
import { maxRefcount } from '../format/refcount.js';
import { compressCluster } from './compress.js';
import { WriteError } from './write-error.js';
import type { Qcow2Writer } from './writer.js';

/** One whole guest cluster written compressed, or normally when compression does not shrink it. */
export async function writeCompressedCluster(w: Qcow2Writer, offset: number, data: Uint8Array): Promise<void> {
  const cs = w.clusterSize;
  if (offset % cs !== 0)
    throw new WriteError('compressed write', `offset 0x${offset.toString(16)} is not cluster aligned`, {
      usage: true,
    });
  if (data.length !== cs && offset + data.length !== w.header.size)
    throw new WriteError('compressed write', `length ${data.length} is not one cluster`, { usage: true });
  w.checkRange(offset, data.length);
  const full = new Uint8Array(cs);
  full.set(data);
  const z = w.header.compressionType === C.COMPRESSION_ZLIB ? compressCluster(full) : null;
  const gc = offset / cs;
  if (!z || z.length >= cs - C.SECTOR_SIZE) {
    await w.writeInCluster(gc, 0, full);
    return;
  }
  const sectors = Math.ceil(z.length / C.SECTOR_SIZE);
  const bytes = sectors * C.SECTOR_SIZE;
  const l1i = Math.floor(gc / w.geo.l2Entries);
  const index = gc % w.geo.l2Entries;
  const l2off = await w.l2ForWrite(l1i);
  const host = await allocBytes(w, bytes);
  w.stats.allocatingWrites++;
  await w.overlap.check(host, bytes);
  const padded = new Uint8Array(bytes);
  padded.set(z);
  w.event('write_compressed');
  await w.io.writeData(host, padded);
  const l2 = await w.l2Cache.get(l2off);
  const oldHi = u32(l2, index * 8);
  const oldLo = u32(l2, index * 8 + 4);
  const [hi, lo] = encodeCompressed(host, sectors, w.geo);
  w.event('l2_update_compressed');
  await w.linkCluster(l2off, index, hi, lo, oldHi, oldLo);
}

/** Sub-cluster allocation for compressed data (refcount +1 on the host cluster per use). */
async function allocBytes(w: Qcow2Writer, bytes: number): Promise<number> {
  const cs = w.clusterSize;
  w.event('cluster_alloc_bytes');
  const fb = w.freeByteOffset;
  // Pack into the partly used cluster unless its refcount is at the width's maximum.
  if (
    fb !== 0 &&
    (fb % cs) + bytes <= cs &&
    (await w.alloc.refcount(Math.floor(fb / cs))) < maxRefcount(w.geo.refcountOrder)
  ) {
    await w.alloc.change(Math.floor(fb / cs), +1);
    w.freeByteOffset = (fb + bytes) % cs === 0 ? 0 : fb + bytes;
    return fb;
  }
  const c = await w.alloc.alloc(1);
  const off = c * cs;
  w.freeByteOffset = bytes === cs ? 0 : off + bytes;
  return off;
}
