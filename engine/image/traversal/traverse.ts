// The one walk of an image's metadata. Order: the header cluster, the active layer, the refcount
// table and blocks, each snapshot's layer, the further walks of shared L2 tables ('repeat'), the
// snapshot table, the encryption header, the bitmaps; or QEMU's check order (`asQemuCheck`, see
// TraversalOptions). Tables are read in sorted batches of bounded size; cancellable between batches.
import type { TraversalContext } from './context.js';
import { newContext } from './context.js';
import { walkBitmaps } from './bitmaps.js';
import { walkLayer, walkRepeats } from './layers.js';
import { walkRefblocks, walkRefcounts, walkRefcountTable } from './refcounts.js';
import { readSnapshotLayers } from './snapshot-layers.js';
import type { TraversalOptions, TraversalSource } from './source.js';
import type { Reference, SnapshotTableProblem, TraversalVisitor } from './types.js';

export async function traverse(
  src: TraversalSource,
  visitor: TraversalVisitor,
  opts: TraversalOptions = {},
): Promise<void> {
  const ctx = newContext(src, visitor, opts);
  const h = src.header;
  if (opts.activeLayerOnly) return walkLayer(ctx, { l1Offset: h.l1TableOffset, l1Size: h.l1Size });
  if (opts.layersOnly) {
    for (const layer of opts.layersOnly) await walkLayer(ctx, layer);
    return;
  }
  if (opts.asQemuCheck) return traverseAsQemuCheck(ctx);
  const cs = ctx.clusterSize;
  headerField(ctx, 'header', 0, cs);
  await walkLayer(ctx, { l1Offset: h.l1TableOffset, l1Size: h.l1Size });
  await walkRefcounts(ctx);
  const snaps = opts.snapshots ?? (await readSnapshotLayers(src));
  const problems: SnapshotTableProblem[] = 'problems' in snaps ? (snaps.problems as SnapshotTableProblem[]) : [];
  for (const p of problems) if (p.index < 0) visitor.snapshotTableProblem?.(p);
  for (const layer of snaps.layers) await walkLayer(ctx, layer);
  for (const p of problems) if (p.index >= 0) visitor.snapshotTableProblem?.(p);
  await walkRepeats(ctx);
  if (snaps.tableBytes > 0) headerField(ctx, 'snapshot-table', h.snapshotsOffset, snaps.tableBytes);
  if (h.crypto && h.crypto.length > 0) headerField(ctx, 'crypto-header', h.crypto.offset, h.crypto.length);
  await walkBitmaps(ctx);
}

/** QEMU's calculate_refcounts order; every L1 entry followed in place (see TraversalOptions.asQemuCheck). */
async function traverseAsQemuCheck(ctx: TraversalContext): Promise<void> {
  const h = ctx.src.header;
  headerField(ctx, 'header', 0, ctx.clusterSize);
  await walkLayer(ctx, { l1Offset: h.l1TableOffset, l1Size: h.l1Size });
  const snaps = ctx.opts.snapshots ?? (await readSnapshotLayers(ctx.src));
  for (const layer of snaps.layers) await walkLayer(ctx, layer);
  if (snaps.tableBytes > 0) headerField(ctx, 'snapshot-table', h.snapshotsOffset, snaps.tableBytes);
  const rt = await walkRefcountTable(ctx);
  if (h.crypto && h.crypto.length > 0) headerField(ctx, 'crypto-header', h.crypto.offset, h.crypto.length);
  await walkBitmaps(ctx);
  if (rt) await walkRefblocks(ctx, rt);
}

/** A structure the header points at directly, never read by the traversal itself. */
function headerField(ctx: TraversalContext, target: Reference['target'], offset: number, length: number): void {
  const r: Reference = { target, offset, length, from: { kind: 'header' }, hi: 0, lo: 0, reserved: false };
  if (offset + length - ctx.src.fileSize >= ctx.clusterSize) r.problem = 'beyond-eof';
  ctx.visitor.reference?.(r);
}
