// Which layer of a backing chain each guest cluster is read from, as `qemu-img map` decides it
// (BlockStatus: the first layer that defines a range as data or zero). For the guest map's
// "colour by layer": an overlay's few clusters next to everything its base still provides.
import type { CancelToken } from '../base/task-control.js';
import { ORIGIN_UNKNOWN, ORIGIN_ZERO, type GuestLayers } from '../contract/guest-layers.js';
import type { ImageChain } from './backing-chain.js';
import { BlockStatus } from './block-status.js';

/**
 * Origin code per guest cluster of the chain's top image (cluster = the top image's cluster size):
 * 1 + depth of the shallowest layer holding data anywhere in that cluster; ORIGIN_ZERO where every
 * byte reads as zeros; ORIGIN_UNKNOWN where the bytes come from a backing file that was not opened.
 */
export async function chainOrigins(
  chain: ImageChain,
  clusterSize: number,
  opts: { cancel?: CancelToken; names?: string[] } = {},
): Promise<GuestLayers> {
  const size = chain.top.virtualSize;
  const clusters = Math.ceil(size / clusterSize);
  const origin = new Uint8Array(clusters).fill(ORIGIN_ZERO);
  const last = chain.layers.length - 1;
  const status = await BlockStatus.open(chain);
  let steps = 0;
  try {
    for await (const e of status.entries()) {
      if ((++steps & 255) === 0) opts.cancel?.throwIfCancelled();
      let code: number;
      if (e.data) code = 1 + e.depth;
      else if (!e.present && e.depth === last && chain.stoppedAt) code = ORIGIN_UNKNOWN;
      else continue; // reads as zeros: the fill value
      const first = Math.floor(e.start / clusterSize);
      const end = Math.ceil((e.start + e.length) / clusterSize);
      for (let k = first; k < end; k++) {
        const cur = origin[k]!;
        // Data wins over zeros and unknown; among layers with data, the shallowest (the one written last).
        if (cur === ORIGIN_ZERO || (code !== ORIGIN_UNKNOWN && (cur === ORIGIN_UNKNOWN || code < cur)))
          origin[k] = code;
      }
    }
  } finally {
    await status.close();
  }
  const counts = new Map<number, number>();
  for (const c of origin) counts.set(c, (counts.get(c) ?? 0) + 1);
  const result: GuestLayers = {
    origin,
    layers: chain.layers.map((l, i) => ({
      depth: l.depth,
      name: opts.names?.[i] ?? l.filename,
      format: l.format,
      clusters: counts.get(1 + l.depth) ?? 0,
    })),
    zeroClusters: counts.get(ORIGIN_ZERO) ?? 0,
    unknownClusters: counts.get(ORIGIN_UNKNOWN) ?? 0,
  };
  if (chain.stoppedAt) result.stoppedAt = chain.stoppedAt.reason;
  return result;
}
