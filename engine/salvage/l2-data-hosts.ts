// The data clusters one L2 table maps, for the salvage's counting of who maps what.
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, l2Offset } from '../format/l2-entry.js';
import type { ReconstructState } from './reconstruct-state.js';

/**
 * Host offsets of the whole data clusters the table maps, one per entry (a cluster mapped twice counts twice).
 * Compressed entries are left out; `zeroAlloc` also counts zero-flagged entries that keep their cluster.
 */
export function dataHosts(st: ReconstructState, buf: Uint8Array, opts: { zeroAlloc: boolean }): number[] {
  const out: number[] = [];
  for (let j = 0; j < st.l2Entries; j++) {
    const hi = u32(buf, j * st.step);
    const lo = u32(buf, j * st.step + 4);
    const type = classifyL2(hi, lo, st.extendedL2, false);
    if (type !== ClusterType.Normal && !(opts.zeroAlloc && type === ClusterType.ZeroAlloc)) continue;
    const x = l2Offset(hi, lo);
    if (x > 0 && x % st.cs === 0 && x < st.fileSize) out.push(x);
  }
  return out;
}
