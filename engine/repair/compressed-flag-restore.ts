/**
 * A compressed L2 entry whose compressed flag (bit 62) was lost reads as a standard entry: its stream
 * offset's low bits and sector count land in the standard descriptor's reserved bits, and what is
 * left maps a cluster of compressed streams as raw data. Clearing those reserved bits would keep the
 * wrong mapping and call it fine. When the word, with the flag set back, is a compressed descriptor
 * whose stream lies inside the file, outside metadata, and inflates to exactly one cluster, that is
 * what the entry was: the flag is restored.
 */
import { decodes } from '../check/compressed-sample.js';
import { hex64 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { dataClusters, decodeCompressed, entryAt, l2Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import { addLostRange, guestOffsetsOfL2Entry } from './guest-ranges.js';
import { at, type PlanContext, whereIs } from './plan-context.js';
import type { BadEntry } from './references.js';

/** Standard-entry findings a lost compressed flag produces (the reserved bits, plus what the offset then looks like). */
const FLAG_LOSS_KINDS = new Set(['l2-reserved-bits', 'l2-data-unaligned', 'l2-prealloc-unaligned', 'l2-beyond-eof']);

/**
 * Restore the compressed flag on every entry whose findings are those of a lost flag and whose
 * restored descriptor inflates. Returns the entry addresses handled, so later phases skip them.
 */
export async function planCompressedFlagRestores(
  ctx: PlanContext,
  byEntry: Map<number, BadEntry[]>,
): Promise<Set<number>> {
  const done = new Set<number>();
  if (!ctx.all || ctx.geo.extendedL2 || ctx.img.hasExternalData) return done;
  for (const [entry, list] of byEntry) {
    const b = list[0]!;
    if (!list.some((x) => x.kind === 'l2-reserved-bits') || !list.every((x) => FLAG_LOSS_KINDS.has(x.kind))) continue;
    // A compressed entry never carries the copied flag: with it, this was a standard entry.
    if (b.hi & (C.OFLAG_COPIED_HI | C.OFLAG_COMPRESSED_HI)) continue;
    const hi = (b.hi | C.OFLAG_COMPRESSED_HI) >>> 0;
    const d = decodeCompressed(hi, b.lo, ctx.geo);
    if (!(await plausibleStream(ctx, d.offset, d.size))) {
      await nameRawReadOfStreams(ctx, b);
      continue;
    }
    done.add(entry);
    ctx.entryFix.set(entry, {
      hi,
      lo: b.lo,
      why: `${whereIs(b)}: restore the compressed flag (${hex64(b.hi, b.lo)} → ${hex64(hi, b.lo)}); the stream at ${at(d.offset)} inflates to a cluster`,
    });
    ctx.fixes.push({
      kind: 'compressed-flag-restored',
      counts: 'corruption',
      differsFromQemu: true,
      text: `${whereIs(b)}: ${hex64(b.hi, b.lo)} read as a standard entry with reserved bits, but with the compressed flag set back it is a compressed stream at ${at(d.offset)} that inflates to a full cluster; flag restored (${hex64(hi, b.lo)}) — QEMU leaves the error in place and reads the compressed bytes as raw data`,
    });
    ctx.corruptionsFixed++;
  }
  return done;
}

/**
 * A flag-lost entry whose stream does not inflate still maps, as raw data, a cluster that holds other
 * entries' compressed streams (or reads it as zeros, when the stream offset's low bit set the zero flag): whatever the guest wrote there is not what it reads. Clearing the
 * reserved bits keeps QEMU's mapping, but the range is named lost rather than called fine.
 */
async function nameRawReadOfStreams(ctx: PlanContext, b: BadEntry): Promise<void> {
  const off = l2Offset(b.hi, b.lo);
  const cs = ctx.clusterSize;
  if (off === 0 || off % cs !== 0 || off >= ctx.walk.fileSize) return;
  if (!(await compressedStreamClusters(ctx)).has(off / cs)) return;
  const guests = guestOffsetsOfL2Entry(ctx, b);
  for (const g of guests) addLostRange(ctx, g, cs);
  const reads = b.lo & C.OFLAG_ZERO_LO ? 'as zeros' : 'as raw data';
  ctx.fixes.push({
    kind: 'raw-read-of-compressed',
    counts: 'none',
    differsFromQemu: true,
    text: `${whereIs(b)}${guests.length ? ` (guest offset ${guests.map(at).join(', ')})` : ''}: ${hex64(b.hi, b.lo)} maps cluster ${at(off)}, which holds other entries' compressed streams, ${reads} — likely a compressed entry that lost its flag, and its stream does not inflate; the range is named lost`,
  });
}

/** Host clusters touched by the compressed streams of the active L2 tables (read once per plan). */
const streamClusters = new WeakMap<PlanContext, Set<number>>();

async function compressedStreamClusters(ctx: PlanContext): Promise<Set<number>> {
  const known = streamClusters.get(ctx);
  if (known) return known;
  const out = new Set<number>();
  streamClusters.set(ctx, out);
  const cs = ctx.clusterSize;
  const tables = new Set(ctx.walk.activeL1.map((e) => e.l2).filter((t) => t && t % cs === 0 && t < ctx.walk.fileSize));
  for (const t of tables) {
    const bytes = await readPadded(ctx.img.io, t, cs);
    for (let i = 0; i < ctx.geo.l2Entries; i++) {
      const [hi, lo] = entryAt(bytes, i * 8);
      if (hi & C.OFLAG_COMPRESSED_HI) for (const c of dataClusters(hi, lo, ctx.geo, cs)) out.add(c);
    }
  }
  return out;
}

async function plausibleStream(ctx: PlanContext, offset: number, size: number): Promise<boolean> {
  const cs = ctx.clusterSize;
  if (offset === 0 || offset + size > Math.ceil(ctx.walk.fileSize / cs) * cs) return false;
  const first = Math.floor(offset / cs);
  const last = Math.floor((offset + size - 1) / cs);
  for (let c = first; c <= last; c++) if (c === 0 || ctx.walk.metadata.has(c)) return false;
  return decodes(ctx.img, offset, size);
}
