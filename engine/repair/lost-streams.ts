/**
 * Compressed streams that lost their L2 entry: a host cluster holding compressed data (some
 * surviving compressed entry, active or in a snapshot, touches it) counts more uses than entries
 * refer to it, beyond the active uses the snapshot-share case names (orphaned-data.ts). Each such
 * use is one guest cluster's data whose entry is gone (a zeroed or overwritten L2 table) and whose
 * guest position nothing left tells. Stream boundaries cannot be told from the bytes (streams are
 * packed, their sizes rounded up to sectors), so the count is the evidence. The repair lowers the
 * count as QEMU does; the data is named lost at unknown positions, never called intact.
 */
import * as C from '../format/constants.js';
import { dataClusters } from '../format/l2-entry.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { Layer, TraversalVisitor } from '../image/traversal/index.js';
import { readPadded } from '../io/positional-io.js';
import type { PlanContext } from './plan-context.js';
import { overCountedData } from './orphaned-data.js';
import { clusterList, type UnplacedDataLoss } from './unplaced-data.js';

export async function planLostStreams(ctx: PlanContext): Promise<void> {
  const cs = ctx.clusterSize;
  const w = ctx.walk;
  const unexplained = (k: number): number => w.onDisk[k]! - w.refs[k]! - (ctx.lostShareUses.get(k) ?? 0);
  const cand = new Set([...overCountedData(ctx)].filter((k) => unexplained(k) > 0));
  if (!cand.size) return;
  // Only clusters some surviving entry maps compressed: a plain data cluster over-counted is another finding.
  const compressed = new Set<number>();
  const visitor: TraversalVisitor = {
    l2Entry: (e) => {
      if (!(e.hi & C.OFLAG_COMPRESSED_HI)) return;
      for (const k of dataClusters(e.hi, e.lo, ctx.geo, cs)) if (cand.has(k)) compressed.add(k);
    },
  };
  const h = ctx.header;
  const layers: Layer[] = [
    { l1Offset: h.l1TableOffset, l1Size: h.l1Size },
    ...w.snapshots.map((s) => ({ l1Offset: s.l1TableOffset, l1Size: s.l1Size, snapshotId: s.id })),
  ];
  await traverse({ ...sourceOf(ctx.img), io: ctx.io, fileSize: w.fileSize }, visitor, { layersOnly: layers });
  const lost: number[] = [];
  let streams = 0;
  for (const k of [...compressed].sort((a, b) => a - b)) {
    const bytes = await readPadded(ctx.io, k * cs, cs);
    if (bytes.every((b) => b === 0)) continue;
    lost.push(k);
    streams += unexplained(k);
  }
  if (!lost.length) return;
  ctx.lostStreams = { clusters: streams, bytes: streams * cs, hostOffsets: lost.map((k) => k * cs) };
  ctx.fixes.push({
    kind: 'compressed-stream-lost',
    counts: 'none',
    explain: true,
    text: `${streams} compressed guest cluster(s) lost their L2 entry: ${clusterList(lost, cs)} count${lost.length === 1 ? 's' : ''} ${streams} more use(s) than entries map, so that many compressed streams there belong to no entry and their guest position cannot be told — that guest data is lost at unknown positions (copy it out with \`qcow2-doctor salvage\` of the original first); the repair does not call the image's data intact`,
  });
}

/** The unplaced loss of freed clusters and of lost compressed streams together. */
export function withLostStreams(ctx: PlanContext, u: UnplacedDataLoss | undefined): UnplacedDataLoss | undefined {
  const s = ctx.lostStreams;
  if (!s) return u;
  if (!u) return s;
  return {
    clusters: u.clusters + s.clusters,
    bytes: u.bytes + s.bytes,
    hostOffsets: [...u.hostOffsets, ...s.hostOffsets],
  };
}
