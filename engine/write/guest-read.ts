import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import { decompressCluster, DecompressionError } from '../image/compressed.js';
import { readPadded } from '../io/positional-io.js';
import { UnreadableError } from '../base/errors.js';
import type { Qcow2Writer } from './writer.js';

/** Guest contents of one whole cluster given its L2 entry. */
export async function clusterContents(w: Qcow2Writer, gc: number, hi: number, lo: number): Promise<Uint8Array> {
  const cs = w.clusterSize;
  const t = classifyL2(hi, lo, false, false);
  switch (t) {
    case ClusterType.Normal:
      return readPadded(w.io, l2Offset(hi, lo), cs);
    case ClusterType.Compressed: {
      const d = decodeCompressed(hi, lo, w.geo);
      if (w.lastDecompressed?.off === d.offset) return w.lastDecompressed.data.slice();
      w.event('read_compressed');
      const stored = await readPadded(w.io, d.offset, d.size);
      const data = decompressStored(stored, cs, w.header.compressionType);
      w.lastDecompressed = { off: d.offset, data };
      return data.slice();
    }
    case ClusterType.ZeroPlain:
    case ClusterType.ZeroAlloc:
      return new Uint8Array(cs);
    default:
      return backingCluster(w, gc);
  }
}

async function backingCluster(w: Qcow2Writer, gc: number): Promise<Uint8Array> {
  const cs = w.clusterSize;
  const out = new Uint8Array(cs);
  const b = w.options.backing;
  const start = gc * cs;
  if (b && start < b.virtualSize) out.set((await b.read(start, Math.min(cs, b.virtualSize - start))).subarray(0, cs));
  return out;
}

/** Guest bytes (clipped at the virtual size), host-contiguous clusters read at once. */
export async function readGuest(w: Qcow2Writer, offset: number, length: number): Promise<Uint8Array> {
  const end = Math.min(offset + length, w.header.size);
  const out = new Uint8Array(Math.max(0, end - offset));
  const cs = w.clusterSize;
  let pos = offset;
  while (pos < end) {
    const gc = Math.floor(pos / cs);
    const inC = pos - gc * cs;
    const n = Math.min(cs - inC, end - pos);
    const e = await w.lookup(gc);
    const t = e ? classifyL2(e.hi, e.lo, false, false) : ClusterType.Unallocated;
    if (e && t === ClusterType.Normal) {
      // Coalesce guest clusters that are contiguous on the host into one read.
      const host = l2Offset(e.hi, e.lo) + inC;
      let len = n;
      while (pos + len < end) {
        const next = await w.lookup(gc + Math.ceil((inC + len) / cs));
        if (
          !next ||
          classifyL2(next.hi, next.lo, false, false) !== ClusterType.Normal ||
          l2Offset(next.hi, next.lo) !== host + len
        )
          break;
        len += Math.min(cs, end - pos - len);
      }
      w.event('read_aio');
      out.set(await readPadded(w.io, host, len), pos - offset);
      pos += len;
      continue;
    } else if (e && (t === ClusterType.ZeroPlain || t === ClusterType.ZeroAlloc)) {
      // zeros: `out` already holds them
    } else if (e && t !== ClusterType.Unallocated) {
      out.set((await clusterContents(w, gc, e.hi, e.lo)).subarray(inC, inC + n), pos - offset);
    } else if (w.options.backing) {
      out.set((await backingCluster(w, gc)).subarray(inC, inC + n), pos - offset);
    }
    pos += n;
  }
  return out;
}

/** A compressed cluster's guest data by QEMU's rules; a bad stream cannot be rewritten. */
function decompressStored(stored: Uint8Array, clusterSize: number, type: number): Uint8Array {
  try {
    return decompressCluster(stored, { type, clusterSize, lenient: false }).data;
  } catch (e) {
    if (e instanceof DecompressionError)
      throw new UnreadableError(`compressed cluster does not decompress: ${e.reason}`);
    throw e;
  }
}
