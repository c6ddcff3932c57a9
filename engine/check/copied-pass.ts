// QEMU's check_oflag_copied: an active L1 or L2 entry's COPIED flag must be set exactly when its
// cluster's on-disk refcount is 1. The walk and the compare pass remember enough to know when no
// entry can disagree; only then is the second walk of the active layer (on the traversal) skipped.
import * as C from '../format/constants.js';
import { hex64, u32 } from '../format/bytes.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { TableRead, TraversalVisitor } from '../image/traversal/index.js';
import { type EntryFinding, referrerOf } from './entry-finding.js';
import { msg } from './messages.js';
import { LOOKUP_FAILED } from './refcount-lookup.js';
import { BATCH_BYTES, type CheckState, TWO32 } from './state.js';
import { l2Where } from './walk-l2.js';
import { isZero, nextNonZeroEntry } from './words.js';

/** After the compare: entries without COPIED are right only if the cluster is shared (refcount != 1). */
export function scanCopiedClear(state: CheckState): void {
  if (!state.anyCopiedClear || state.copiedReplay) return;
  const bits = state.copiedClear;
  for (let b = 0; b < bits.length; b++) {
    const x = bits[b]!;
    if (x === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      if ((x >> bit) & 1 && state.refAt(b * 8 + bit) === 1) {
        state.copiedReplay = true;
        return;
      }
    }
  }
}

/**
 * The walk of the active layer, when a disagreement is possible: the traversal hands over each
 * non-empty L1 entry's table in L1 order, in place (as the checker's walk), and waits while its
 * entries' on-disk refcounts are looked up.
 */
export async function checkOflagCopied(state: CheckState): Promise<void> {
  if (!state.copiedReplay) return;
  const visitor: TraversalVisitor = { l2TableEnd: (t, bytes) => copiedTable(state, t, bytes) };
  await traverse(sourceOf(state.image), visitor, {
    asQemuCheck: true,
    activeLayerOnly: true,
    buffers: state.pools,
    batchBytes: BATCH_BYTES,
    yieldTurns: state.listened,
    ...(state.opts.cancel ? { cancel: state.opts.cancel } : {}),
  });
}

/** One active L1 entry and its L2 table (QEMU skips the table when the L2 cluster's refcount is unreadable). */
async function copiedTable(state: CheckState, t: TableRead, bytes: Uint8Array): Promise<void> {
  if (t.offset === 0) return;
  if (!(await copiedL1Entry(state, t.index!, t.offset))) return;
  await copiedL2Entries(state, t.index!, t.offset, bytes);
}

/** The L1 entry's COPIED flag against its L2 table's refcount; false when that refcount is unreadable. */
async function copiedL1Entry(state: CheckState, idx: number, l2Off: number): Promise<boolean> {
  const l1 = state.image.l1;
  const hi = u32(l1, 8 * idx);
  const lo = u32(l1, 8 * idx + 4);
  const rc = await state.lookup.get(Math.floor(l2Off / state.clusterSize));
  if (rc === LOOKUP_FAILED) return false;
  if ((rc === 1) === ((hi & C.OFLAG_COPIED_HI) !== 0)) return true;
  const line = msg.copiedL2(idx, hex64(hi, lo), rc);
  state.say(line);
  state.counters.corruptions++;
  const w: EntryFinding = {
    kind: 'copied-l1',
    table: 'l1',
    tableOffset: state.image.header.l1TableOffset,
    index: idx,
    entry: hex64(hi, lo),
    refcount: rc,
  };
  state.find(w);
  state.anomalies.add('copied-l1', {
    cluster: Math.floor(l2Off / state.clusterSize),
    refcount: rc,
    qemuMessage: line,
    referrer: referrerOf(w),
  });
  state.anomalies.cut();
  return true;
}

/** Every allocated entry of the L2 table: its COPIED flag against its data cluster's refcount. */
async function copiedL2Entries(state: CheckState, idx: number, l2Off: number, buf: Uint8Array): Promise<void> {
  // An all-zero table (or one past the end of the file) has nothing to compare.
  if (buf === state.zeros || (buf.length <= state.zeros.length && isZero(buf, state.zeros))) return;
  const geo = state.image.geo;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const place = { l2Offset: l2Off, active: true, l1Index: idx, snapshot: undefined, copiedCheck: true };
  const halves = geo.l2EntrySize / 8;
  for (let e = 0; e < geo.l2Entries; e++) {
    const p = e * geo.l2EntrySize;
    const ehi = dv.getUint32(p);
    const elo = dv.getUint32(p + 4);
    if ((ehi | elo) === 0) {
      // Skip the zero stretch (a word at a time, not an entry at a time).
      e = Math.floor(nextNonZeroEntry(buf, (e + 1) * halves, geo.l2Entries * halves) / halves) - 1;
      continue;
    }
    state.entriesVisited++;
    if (ehi & C.OFLAG_COMPRESSED_HI) continue;
    const hasOff = (ehi & C.L2E_OFFSET_MASK_HI) !== 0 || (elo & C.L2E_OFFSET_MASK_LO) !== 0;
    const normal =
      !state.extendedL2 && elo & C.OFLAG_ZERO_LO
        ? hasOff
        : hasOff || (state.dataFile && (ehi & C.OFLAG_COPIED_HI) !== 0);
    if (!normal) continue;
    const off = (ehi & C.L2E_OFFSET_MASK_HI) * TWO32 + ((elo & C.L2E_OFFSET_MASK_LO) >>> 0);
    const erc = state.dataFile ? 1 : await state.lookup.get(Math.floor(off / state.clusterSize));
    if (erc === LOOKUP_FAILED) continue;
    if ((erc === 1) !== ((ehi & C.OFLAG_COPIED_HI) !== 0)) {
      const line = msg.copiedData(hex64(ehi, elo), erc);
      state.say(line);
      state.counters.corruptions++;
      const w = l2Where(state, ehi, elo, e, place);
      w.kind = 'copied-l2';
      w.refcount = erc;
      state.find(w);
      state.anomalies.add('copied-l2', {
        cluster: Math.floor(off / state.clusterSize),
        refcount: erc,
        qemuMessage: line,
        referrer: referrerOf(w),
      });
      state.anomalies.cut();
    }
  }
}
