/**
 * Phase 4 of the plan: the snapshot table and the header extensions. Incomplete v3 entries, oversized
 * extra data and restored snapshot L1 pointers are written as a new table; stale persistent bitmaps
 * are dropped from the header, as QEMU does on any -r.
 */
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { encodeSnapshotEntry } from '../format/snapshot.js';
import type { Qcow2Header } from '../format/header.js';
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import type { PlanContext } from './plan-context.js';

/** The rewritten snapshot table, or undefined when it stays as it is. */
export function planSnapshotTable(ctx: PlanContext): Uint8Array | undefined {
  const w = ctx.walk;
  if (w.snapshotTableError) {
    ctx.refusals.push({
      kind: 'snapshot-table',
      what: `snapshot table: ${w.snapshotTableError}`,
      decide: 'which snapshots to drop (QEMU -r all discards them); nothing is changed here',
    });
    ctx.keepAllLeaks = true;
    return undefined;
  }
  if (!ctx.all || (!w.incompleteSnapshots.length && !w.oversizeSnapshots.length && !ctx.snapshotL1Fix.size))
    return undefined;
  const table = concat(
    w.snapshots.map((s, i) => encodeSnapshotEntry({ ...s, ...(ctx.snapshotL1Fix.get(i) ?? {}) }, ctx.header.size)),
  );
  for (const o of w.oversizeSnapshots) {
    ctx.fixes.push({
      kind: 'snapshot-extra-truncated',
      counts: 'corruption',
      qemuLine: `Discarding too much extra metadata in snapshot table entry ${o.index} (${o.size} > ${C.QCOW_MAX_SNAPSHOT_EXTRA_DATA})`,
      text: `snapshot table entry ${o.index} had ${o.size} bytes of extra data (at most ${C.QCOW_MAX_SNAPSHOT_EXTRA_DATA} allowed); truncated, snapshot kept`,
    });
    ctx.corruptionsFixed++;
  }
  for (const i of w.incompleteSnapshots) {
    ctx.fixes.push({
      kind: 'snapshot-incomplete',
      counts: 'corruption',
      qemuLine: `Repairing snapshot table entry ${i} is incomplete`,
      text: `snapshot table entry ${i} had less than 16 bytes of extra data; table rewritten with complete entries`,
    });
    ctx.corruptionsFixed++;
  }
  return table;
}

/**
 * Stale persistent bitmaps (a program without bitmap support wrote the image): every reader already
 * ignores them, so, as QEMU does on any -r, the extension is dropped and their clusters freed.
 */
export async function planStaleBitmaps(ctx: PlanContext): Promise<{ offset: number; bytes: Uint8Array } | undefined> {
  if (!ctx.walk.staleBitmaps) return undefined;
  const ext = await headerWithoutExtension(ctx.io, ctx.header, C.EXT_BITMAPS);
  if (ext) {
    ctx.fixes.push({
      kind: 'stale-bitmaps-dropped',
      counts: 'none',
      text: 'the bitmaps extension was stale (its autoclear bit is clear); removed from the header, its clusters freed (as QEMU does)',
    });
    return ext;
  }
  ctx.keepAllLeaks = true;
  ctx.refusals.push({
    kind: 'stale-bitmaps',
    what: 'the bitmaps extension is present but its autoclear bit is clear (the bitmaps are stale)',
    decide: 'drop the bitmaps by hand; the header extension area could not be rewritten safely',
  });
  return undefined;
}

/**
 * Drop the header extensions of `type` when they are the last ones before the end marker: one
 * 8-byte end marker written where the first of them starts (8-aligned, so inside one sector:
 * atomic). Bytes after the new end marker are ignored by every reader. Undefined when the
 * extensions are not at the tail (that would need a non-atomic rewrite of the area) or the area
 * cannot be parsed.
 */
async function headerWithoutExtension(
  io: PositionalIO,
  h: Qcow2Header,
  type: number,
): Promise<{ offset: number; bytes: Uint8Array } | undefined> {
  const cs = 2 ** h.clusterBits;
  const c0 = await readPadded(io, 0, cs);
  const limit = h.backingFileOffset !== 0 ? h.backingFileOffset : cs;
  let off = h.headerLength;
  let firstDropped = -1;
  for (;;) {
    if (off + 8 > limit) return undefined;
    const t = u32(c0, off);
    const len = u32(c0, off + 4);
    if (t === C.EXT_END) break;
    const whole = 8 + Math.ceil(len / 8) * 8;
    if (off + whole > limit) return undefined;
    if (t === type) {
      if (firstDropped < 0) firstDropped = off;
    } else if (firstDropped >= 0) return undefined;
    off += whole;
  }
  if (firstDropped < 0 || firstDropped % 8 !== 0) return undefined;
  return { offset: firstDropped, bytes: new Uint8Array(8) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
