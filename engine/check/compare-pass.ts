// QEMU's compare_refcounts: every cluster's on-disk refcount against the references the walk
// counted, streaming the refcount blocks once in sorted batches. 16-bit refcounts (the default) are
// compared a page of the IMRT at a time, as memcmp-like checks where the common stretches allow it.
// Beyond QEMU: refcounts for clusters past the compared range.
import { HostRole } from '../contract/roles.js';
import { getRefcounts } from '../format/refcount.js';
import { pipeline, readRangesInto } from '../image/traversal/batch-reads.js';
import { IMRT_PAGE } from './imrt.js';
import { msg } from './messages.js';
import { WIDE_SENTINEL } from './refcount-array.js';
import { BATCH_BYTES, type CheckState } from './state.js';
import { isZero, nextNonZeroEntry } from './words.js';

/** Bytes of 16-bit ones (00 01 ...) compared at a time. */
const ONES_PIECE = 64 * 1024;
let ones16: Buffer | undefined;

export async function compareRefcounts(state: CheckState): Promise<void> {
  const geo = state.image.geo;
  const E = geo.refcountBlockEntries;
  const nb = state.nbClusters();
  const rtEntries = state.image.reftable.length / 8;
  const blocksNeeded = Math.ceil(nb / E);
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / state.clusterSize));
  const decoded: { refcounts?: Float64Array } = {}; // only for blocks the 16-bit quad compare can't take
  let r0 = 0;
  const nextBatch = (): { r0: number; r1: number; offsets: number[] } | undefined => {
    if (r0 >= blocksNeeded) return undefined;
    const r1 = Math.min(blocksNeeded, r0 + perBatch);
    const offsets: number[] = [];
    for (let r = r0; r < r1; r++) {
      const off = state.lookup.blockOffset(r);
      if (off !== 0 && off % state.clusterSize === 0) offsets.push(off);
    }
    const b = { r0, r1, offsets };
    r0 = r1;
    return b;
  };
  await pipeline(
    state.image.io,
    state.fileSize,
    state.clusterSize,
    state.zeros,
    state.pools,
    nextBatch,
    ({ r0: first, r1: last }, blocks) => {
      state.checkCancel();
      for (let r = first; r < last; r++) {
        const base = r * E;
        const end = Math.min(nb, base + E);
        const off = r < rtEntries ? state.lookup.blockOffset(r) : 0;
        if (off !== 0 && off % state.clusterSize !== 0) {
          unreadableBlock(state, r, off, base, end);
          continue;
        }
        const block = off === 0 ? state.zeros : blocks.get(off)!;
        if (geo.refcountOrder === 4 && block.byteOffset % 4 === 0 && base % 4 === 0)
          compareBlock16(state, block, base, end);
        else compareBlockDecoded(state, block, base, end, decoded);
        // The rest of the last block: refcounts of clusters past the end of the image.
        if (end === nb && end < base + E && r < rtEntries) refcountsPastRange(state, block, r, end - base);
        state.work(1, 'refcount blocks');
      }
    },
    state.listened,
  );
  await refcountsBeyondEof(state, nb);
}

/** Every lookup through an unaligned reftable entry fails (QEMU: -EIO, a check error per cluster). */
function unreadableBlock(state: CheckState, r: number, off: number, base: number, end: number): void {
  state.lookup.onUnaligned?.(r, off);
  for (let k = base; k < end; k++) {
    const line = msg.cantGetRefcount(k);
    state.say(line);
    state.counters.checkErrors++;
    state.anomalies.add('refcount-unreadable', { cluster: k, qemuMessage: line });
  }
}

/** Any width: the block decoded, then compared cluster by cluster. */
function compareBlockDecoded(
  state: CheckState,
  block: Uint8Array,
  base: number,
  end: number,
  decoded: { refcounts?: Float64Array },
): void {
  const ref = state.refBytes;
  state.imrt.prepareBytes(base, end, false);
  const rcBuf = (decoded.refcounts ??= new Float64Array(state.image.geo.refcountBlockEntries));
  getRefcounts(block, state.image.geo.refcountOrder, rcBuf, end - base);
  for (let k = base; k < end; k++) {
    const rc = rcBuf[k - base]!;
    let rf = ref[k]!;
    if (rf === WIDE_SENTINEL && state.wide) rf = state.wideCounts.get(k)!;
    if (rc !== 0 || rf !== 0) {
      state.highest = k;
      if (rc !== rf) mismatch(state, k, rc, rf);
    }
  }
}

/**
 * 16-bit refcounts, page by page of the IMRT: a stretch counted once and never written (virtual)
 * needs only the block compared with ones; elsewhere a fully used stretch (every cluster referenced
 * once, refcount 1) is still the common case.
 */
function compareBlock16(state: CheckState, block: Uint8Array, base: number, end: number): void {
  const imrt = state.imrt;
  for (let pa = base; pa < end; ) {
    // The stretch of pages from pa that runs cover, or else pa's page alone.
    let pb = Math.min(end, (Math.floor(pa / IMRT_PAGE) + 1) * IMRT_PAGE);
    const covered = imrt.runCovers(pa, pb);
    while (covered && pb < end) {
      const next = Math.min(end, pb + IMRT_PAGE);
      if (!imrt.runCovers(pb, next)) break;
      pb = next;
    }
    const part = block.subarray(2 * (pa - base));
    if (covered && blockOnes16(part, pa, pb)) state.highest = pb - 1;
    else if (!covered && imrt.untouched(pa) && isZero(part.subarray(0, 2 * (pb - pa)), state.zeros)) {
      // Nothing counted, nothing stored: free clusters, memory left unread.
    } else {
      imrt.prepareBytes(pa, pb, false);
      if (allOnes16(state, part, pa, pb)) state.highest = pb - 1;
      else compareQuads16(state, part, pa, pb);
    }
    pa = pb;
  }
}

/** Whether clusters [base, end) each have one reference and a 16-bit refcount of 1 (a memcmp). */
function allOnes16(state: CheckState, block: Uint8Array, base: number, end: number): boolean {
  const ref = state.refBytes;
  if ((end - base) % 4 !== 0 || ref.byteOffset !== 0) return false;
  const rw = new Int32Array(ref.buffer, base, (end - base) >>> 2);
  for (let q = 0; q < rw.length; q++) if (rw[q] !== 0x01010101) return false;
  return blockOnes16(block, base, end);
}

/** Whether the 16-bit refcounts of clusters [base, end) in their block are all 1 (a memcmp). */
function blockOnes16(block: Uint8Array, base: number, end: number): boolean {
  const bytes = 2 * (end - base);
  // Compared a piece at a time against a small pattern: a block-sized one would cost its page faults.
  const ones = (ones16 ??= Buffer.alloc(ONES_PIECE, Uint8Array.of(0, 1)));
  for (let at = 0; at < bytes; at += ONES_PIECE) {
    const n = Math.min(ONES_PIECE, bytes - at);
    if (!Buffer.from(block.buffer, block.byteOffset + at, n).equals(ones.subarray(0, n))) return false;
  }
  return true;
}

/**
 * Compare one 16-bit refcount block with the IMRT four clusters at a time: when the block's high
 * bytes are zero and its low bytes equal the IMRT's bytes (all below 128, so no wide counts), the
 * four refcounts match. Anything else is looked at cluster by cluster.
 */
function compareQuads16(state: CheckState, block: Uint8Array, base: number, end: number): void {
  const ref = state.refBytes;
  const bw = new Uint32Array(block.buffer, block.byteOffset, block.byteLength >>> 2);
  const quads = (end - base) >>> 2;
  const rw = new Uint32Array(ref.buffer, ref.byteOffset + base, quads);
  let high = -1;
  let hq = -1; // last quad matched whole with a non-zero count (its exact cluster is found at the end)
  for (let q = 0; q < quads; q++) {
    const a = bw[2 * q]!;
    const b = bw[2 * q + 1]!;
    const y = rw[q]!;
    // The common cases first: four clusters referenced once (00 01 00 01 ...), or four free ones.
    if (y === 0x01010101) {
      if (a === 0x01000100 && b === 0x01000100) {
        hq = q;
        continue;
      }
    } else if (y === 0 && (a | b) === 0) continue;
    if (((a | b) & 0x00ff00ff) === 0 && (y & 0x80808080) === 0) {
      const packed = (((a >>> 8) & 0xff) | ((a >>> 16) & 0xff00) | ((b << 8) & 0xff0000) | (b & 0xff000000)) >>> 0;
      if (packed === y) {
        if (y !== 0) hq = q;
        continue;
      }
    }
    for (let h = 0; h < 4; h++) {
      const k = base + 4 * q + h;
      const j = 2 * (k - base);
      const rc = (block[j]! << 8) | block[j + 1]!;
      const rf = state.refAt(k);
      if (rc !== 0 || rf !== 0) {
        high = k;
        if (rc !== rf) mismatch(state, k, rc, rf);
      }
    }
  }
  if (hq >= 0 && base + 4 * hq > high) {
    const y = rw[hq]!;
    high = base + 4 * hq + (y >>> 24 !== 0 ? 3 : (y & 0xff0000) !== 0 ? 2 : (y & 0xff00) !== 0 ? 1 : 0);
  }
  if (high >= 0) state.highest = high;
  for (let k = base + 4 * quads; k < end; k++) {
    const rc = (block[2 * (k - base)]! << 8) | block[2 * (k - base) + 1]!;
    const rf = state.refAt(k);
    if (rc !== 0 || rf !== 0) {
      state.highest = k;
      if (rc !== rf) mismatch(state, k, rc, rf);
    }
  }
}

/** QEMU's "ERROR/Leaked cluster k refcount=rc reference=rf": a corruption when too low, else a leak. */
function mismatch(state: CheckState, k: number, rc: number, rf: number): void {
  if (rc === 0) state.rebuild = true;
  if (k < state.fileClusters) {
    const bit = 1 << (k & 7);
    if (
      ((state.copiedSet[k >>> 3]! & bit) !== 0 && rc !== 1) ||
      (state.anyCopiedClear && (state.copiedClear[k >>> 3]! & bit) !== 0 && rc === 1)
    )
      state.copiedReplay = true;
  }
  const rm = state.roleMap;
  if (rm && rc > 0 && rf > 0 && rc > rf && rm[k] === HostRole.Free) rm[k] = HostRole.Corrupt;
  const line = msg.refcountMismatch(k, rc, rf);
  state.say(line);
  if (rc < rf) {
    state.counters.corruptions++;
    state.anomalies.add(rc === 0 ? 'refcount-zero-referenced' : 'refcount-too-low', {
      cluster: k,
      refcount: rc,
      references: rf,
      qemuMessage: line,
    });
  } else {
    state.counters.leaks++;
    state.anomalies.add('leaked-cluster', { cluster: k, refcount: rc, references: rf, qemuMessage: line });
    if (rm && rf === 0) rm[k] = HostRole.Leaked;
  }
  if (rm && rc < rf && rm[k] !== HostRole.Free) rm[k] = HostRole.Corrupt;
}

/** Beyond QEMU: non-zero refcounts for clusters past the compared range (QEMU never looks). */
async function refcountsBeyondEof(state: CheckState, nb: number): Promise<void> {
  const E = state.image.geo.refcountBlockEntries;
  const rtEntries = state.image.reftable.length / 8;
  let budget = 64; // blocks examined at most: cheap, bounded
  const rt = state.image.reftable;
  // The block holding cluster nb (if it is not the first of its block) was seen by the compare.
  for (
    let r = nextNonZeroEntry(rt, Math.ceil(nb / E), rtEntries);
    r < rtEntries && budget > 0;
    r = nextNonZeroEntry(rt, r + 1, rtEntries)
  ) {
    const off = state.lookup.blockOffset(r);
    if (off === 0 || off % state.clusterSize !== 0 || off >= state.fileSize) continue;
    budget--;
    const pool = state.pools[0]!; // idle now: its arena is already faulted in
    pool.release();
    const block = (
      await readRangesInto(state.image.io, state.fileSize, [off], state.clusterSize, state.zeros, pool)
    ).get(off)!;
    refcountsPastRange(state, block, r, 0);
  }
}

/** Non-zero refcounts in block r from entry `from` on: clusters past the image's end, never referenced. */
function refcountsPastRange(state: CheckState, block: Uint8Array, r: number, from: number): void {
  const geo = state.image.geo;
  const E = geo.refcountBlockEntries;
  // Nearly always zero: such blocks are skipped undecoded.
  if (isZero(block.subarray(Math.floor((from << geo.refcountOrder) / 8)), state.zeros)) return;
  const rc = new Float64Array(E);
  getRefcounts(block, geo.refcountOrder, rc, E);
  for (let j = from; j < E; j++) {
    if (rc[j] === 0) continue;
    const k = r * E + j;
    state.anomalies.add('refcount-beyond-eof', { cluster: k, refcount: rc[j]!, references: 0 });
    if (state.roleMap && k < state.roleMap.length) state.roleMap[k] = HostRole.BeyondEof;
  }
}
