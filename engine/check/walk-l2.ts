// QEMU's check_refcounts_l2 for one L2 table: count every data and compressed cluster it maps,
// QEMU's messages for bad entries in QEMU's order, the active layer's allocation statistics, the
// COPIED bookkeeping and the guest map. The loop takes the overwhelmingly common entry inline, a
// run of consecutive host clusters at a time; everything else goes through `l2Entry`.
import { GuestState, HostRole } from '../contract/roles.js';
import * as C from '../format/constants.js';
import { hex64 } from '../format/bytes.js';
import { MAX_COMPRESSED_SAMPLES } from './compressed-sample.js';
import { type EntryFinding, l2EntryWhere, referrerOf } from './entry-finding.js';
import { msg } from './messages.js';
import type { CheckedSnapshot } from './snapshot-table.js';
import { type CheckState, TWO32 } from './state.js';
import { bswap32, isZero, LITTLE_ENDIAN, nextNonZeroEntry, runLength, setBitRange } from './words.js';

/** Which layer a table belongs to and where it sits in it. */
export interface L2Place {
  l2Offset: number;
  /** The active layer (else a snapshot's). */
  active: boolean;
  l1Index: number;
  snapshot: CheckedSnapshot | undefined;
  /** Whether COPIED flags of this table's entries are checked (active tables). */
  copiedCheck: boolean;
}

/** QEMU's check_refcounts_l2 for the table `buf` (its bytes). */
export function checkL2(state: CheckState, buf: Uint8Array, place: L2Place): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = state.image.geo.l2Entries;
  state.l2NextContig = 0;
  state.l2Allocated = 0;
  state.l2Fragmented = 0;
  // An all-zero table (one past the end of the file reads as zeros) counts nothing: one comparison.
  // A hostile L1 (QEMU's maximum, 4 Mi entries) can point thousands of entries at such tables.
  if (buf === state.zeros || (buf.length <= state.zeros.length && isZero(buf, state.zeros))) return;
  const fast = LITTLE_ENDIAN && !state.extendedL2 && !state.dataFile && state.image.header.version !== 2;
  if (!fast) {
    const es = state.image.geo.l2EntrySize;
    const halves = es / 8;
    for (let i = 0; i < n; i++) {
      const p = i * es;
      if (
        (dv.getUint32(p) | dv.getUint32(p + 4) | (halves > 1 ? dv.getUint32(p + 8) | dv.getUint32(p + 12) : 0)) ===
        0
      ) {
        // An all-zero entry changes nothing: jump to the next entry with a non-zero word.
        i = Math.floor(nextNonZeroEntry(buf, (i + 1) * halves, n * halves) / halves) - 1;
        continue;
      }
      state.entriesVisited++;
      l2Entry(state, dv, i, place);
    }
  } else {
    // Entries are big-endian: read them as native words (raw) and byte-swap only what is used.
    if ((buf.byteOffset & 3) !== 0) {
      state.l2Scratch ??= new Uint8Array(state.clusterSize);
      state.l2Scratch.set(buf.subarray(0, state.clusterSize));
      buf = state.l2Scratch;
    }
    fastL2(state, new Int32Array(buf.buffer, buf.byteOffset, 2 * n), dv, place);
  }
  if (place.active) {
    state.counters.allocatedClusters += state.l2Allocated;
    state.counters.fragmentedClusters += state.l2Fragmented;
  }
}

/** The table as native words `words`: runs of plain data entries counted inline, the rest by `l2Entry`. */
function fastL2(state: CheckState, words: Int32Array, dv: DataView, place: L2Place): void {
  const { active, l1Index, copiedCheck } = place;
  const n = words.length >>> 1;
  const cs = state.clusterSize;
  const cb = state.clusterBits;
  const rm = state.roleMap;
  const gm = active ? state.guestMap : undefined;
  const role = active ? HostRole.Data : HostRole.SnapshotData;
  const hiMul = 2 ** (32 - cb);
  const fileClusters = state.fileClusters;
  const gBase = l1Index * n;
  // Anything in these bits leaves the fast path: compressed/reserved (hi), reserved/zero/unaligned (lo).
  const rejectHi = bswap32((C.OFLAG_COMPRESSED_HI | C.L2E_STD_RESERVED_MASK_HI) >>> 0);
  const rejectLo = bswap32((cs - 1) >>> 0);
  const copiedRaw = bswap32(C.OFLAG_COPIED_HI);
  let nextContig = state.l2NextContig;
  let allocated = state.l2Allocated;
  let fragmented = state.l2Fragmented;
  let i = 0;
  while (i < n) {
    const rhi = words[2 * i]!;
    const rlo = words[2 * i + 1]!;
    if ((rhi | rlo) === 0) {
      // Unallocated: skip the whole stretch, four entries a time while it lasts.
      let p = 2 * i + 2;
      const wEnd = 2 * n;
      while (
        p + 8 <= wEnd &&
        (words[p]! |
          words[p + 1]! |
          words[p + 2]! |
          words[p + 3]! |
          words[p + 4]! |
          words[p + 5]! |
          words[p + 6]! |
          words[p + 7]!) ===
          0
      )
        p += 8;
      while (p < wEnd && (words[p]! | words[p + 1]!) === 0) p += 2;
      i = p >>> 1;
      continue;
    }
    if ((rhi & rejectHi) === 0 && (rlo & rejectLo) === 0) {
      const lo = bswap32(rlo) >>> 0;
      const k = (bswap32(rhi) & C.L2E_OFFSET_MASK_HI) * hiMul + (lo >>> cb);
      if (k !== 0 && k < fileClusters) {
        // The run: following entries with the same high word and the next host cluster each.
        const maxRun = Math.min(n - i, fileClusters - k, (TWO32 - lo) / cs);
        const m = runLength(words, i, 2 * (i + maxRun), rhi, lo, cb);
        if (active) {
          allocated += m;
          if (nextContig !== 0 && k * cs !== nextContig) fragmented++;
          nextContig = (k + m) * cs;
        }
        countRun(state, k, m, (rhi & copiedRaw) !== 0, copiedCheck, role, rm);
        if (gm !== undefined && gBase + i < gm.length)
          gm.fill(GuestState.Data, gBase + i, Math.min(gm.length, gBase + i + m));
        i += m;
        continue;
      }
    }
    state.l2NextContig = nextContig;
    state.l2Allocated = allocated;
    state.l2Fragmented = fragmented;
    state.entriesVisited++;
    l2Entry(state, dv, i, place);
    nextContig = state.l2NextContig;
    allocated = state.l2Allocated;
    fragmented = state.l2Fragmented;
    i++;
  }
  state.l2NextContig = nextContig;
  state.l2Allocated = allocated;
  state.l2Fragmented = fragmented;
}

/**
 * Count one reference to each of clusters [k, k+m) from data entries with the same COPIED flag:
 * QEMU's qcow2_inc_refcounts_imrt plus our COPIED bookkeeping, clusters seen before handled one by one.
 */
function countRun(
  state: CheckState,
  k: number,
  m: number,
  copied: boolean,
  copiedCheck: boolean,
  role: number,
  rm: Uint8Array | undefined,
): void {
  const ref = state.refBytes;
  const setBits = state.copiedSet;
  const fastLimit = state.fastLimit;
  const end = k + m;
  if (state.imrt.countFresh(k, end)) {
    // No cluster of the run was referenced before: one reference each, their roles were free.
    if (rm !== undefined) rm.fill(role, k, end);
  } else {
    state.imrt.prepareBytes(k, end, true);
    for (let c = k; c < end; c++) {
      const v = ref[c]!;
      if (v === 0) {
        // First reference: its role was free, and no COPIED bit can be set for it yet.
        ref[c] = 1;
        if (rm !== undefined) rm[c] = role;
        continue;
      }
      const bit = 1 << (c & 7);
      if (copiedCheck && copied) {
        state.copiedReplay = true;
        if (v >= fastLimit) state.incCluster(c, role);
        else state.bump(c, v, role);
      } else if (v >= fastLimit || (setBits[c >>> 3]! & bit) !== 0) state.incCluster(c, role);
      else state.bump(c, v, role);
    }
  }
  if (copiedCheck) {
    if (copied) setBitRange(setBits, k, end);
    else {
      state.noteCopiedClear();
      setBitRange(state.copiedClear, k, end);
    }
  }
}

/** One L2 entry, general case: QEMU's check_refcounts_l2 loop body, plus our extra diagnostics. */
function l2Entry(state: CheckState, dv: DataView, i: number, place: L2Place): void {
  const { l2Offset, active, l1Index, snapshot, copiedCheck } = place;
  const geo = state.image.geo;
  const p = i * geo.l2EntrySize;
  const ext = state.extendedL2;
  const cs = state.clusterSize;
  const hi = dv.getUint32(p);
  const lo = dv.getUint32(p + 4);
  const bhi = ext ? dv.getUint32(p + 8) : 0;
  const blo = ext ? dv.getUint32(p + 12) : 0;
  const gm = active ? state.guestMap : undefined;
  const g = l1Index * geo.l2Entries + i;
  const inGuest = gm !== undefined && g < gm.length;
  if ((hi | lo | blo) === 0) {
    if (inGuest && bhi !== 0) gm[g] = GuestState.Zero;
    return; // unallocated (the bitmap has at most zero bits)
  }
  if (hi & C.OFLAG_COMPRESSED_HI) {
    compressedEntry(state, hi, lo, bhi, blo, i, place);
    if (inGuest) gm[g] = GuestState.Compressed;
    return;
  }
  if ((hi & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (lo & C.L2E_STD_RESERVED_MASK_LO) !== 0) {
    const line = msg.l2Reserved(hex64(hi, lo));
    state.say(line);
    state.counters.corruptions++;
    entryFinding(state, 'l2-reserved-bits', line, hi, lo, i, place);
  }
  const hasOff = (hi & C.L2E_OFFSET_MASK_HI) !== 0 || (lo & C.L2E_OFFSET_MASK_LO) !== 0;
  const zeroFlag = !ext && (lo & C.OFLAG_ZERO_LO) !== 0;
  if (zeroFlag) {
    if (state.image.header.version === 2)
      state.anomalies.add('v2-zero-flag', {
        referrer: {
          kind: active ? 'l2' : 'snapshot-l2',
          table: l2Offset,
          index: i,
          guestOffset: g * cs,
          snapshotId: snapshot?.id,
        },
      });
    if (inGuest) gm[g] = GuestState.Zero;
    if (!hasOff) return; // ZERO_PLAIN
  } else if (!hasOff && !(state.dataFile && hi & C.OFLAG_COPIED_HI)) {
    // UNALLOCATED
    if (ext && blo !== 0) {
      const line = msg.unallocatedWithBitmap();
      state.say(line);
      state.counters.corruptions++;
      entryFinding(state, 'unallocated-with-bitmap', line, hi, lo, i, place);
      if (inGuest) gm[g] = GuestState.Invalid;
    } else if (inGuest && bhi !== 0) gm[g] = GuestState.Zero;
    return;
  }
  // NORMAL or ZERO_ALLOC
  const off = (hi & C.L2E_OFFSET_MASK_HI) * TWO32 + ((lo & C.L2E_OFFSET_MASK_LO) >>> 0);
  if (ext && (bhi & blo) !== 0) {
    const line = msg.corruptedSubclusterBitmap(off.toString(16));
    state.say(line);
    state.counters.corruptions++;
    entryFinding(state, 'subcluster-bitmap-corrupt', line, hi, lo, i, place);
  }
  const unaligned = (lo & C.L2E_OFFSET_MASK_LO & (cs - 1)) !== 0;
  if (unaligned) {
    state.counters.corruptions++;
    const containsData = ext ? blo !== 0 : !zeroFlag;
    const line = containsData ? msg.dataUnaligned(off.toString(16)) : msg.preallocUnaligned(off.toString(16));
    state.say(line);
    entryFinding(state, containsData ? 'data-unaligned' : 'prealloc-unaligned', line, hi, lo, i, place);
  }
  if (active) {
    state.l2Allocated++;
    if (state.l2NextContig !== 0 && off !== state.l2NextContig) state.l2Fragmented++;
    state.l2NextContig = off + cs;
    if (inGuest && !zeroFlag) gm[g] = dataGuestState(ext, bhi, blo);
  }
  if (state.dataFile) {
    if (copiedCheck && !(hi & C.OFLAG_COPIED_HI)) state.copiedReplay = true;
    if (active && off !== g * cs)
      state.anomalies.add('external-data-mismatch', {
        referrer: { kind: 'l2', table: l2Offset, index: i, guestOffset: g * cs },
      });
    return;
  }
  const role = active ? HostRole.Data : HostRole.SnapshotData;
  if (state.fits(off, cs)) state.incSpan(off, cs, role);
  else state.incRange(off, cs, role, l2Where(state, hi, lo, i, place));
  if (copiedCheck) state.markCopied(Math.floor(off / cs), (hi & C.OFLAG_COPIED_HI) !== 0);
}

/** What the guest sees of an allocated entry: data, or per its subcluster bitmap (extended L2). */
function dataGuestState(ext: boolean, bhi: number, blo: number): number {
  if (!ext) return GuestState.Data;
  if ((bhi & blo) !== 0) return GuestState.Invalid;
  if (blo === 0xffffffff) return GuestState.Data;
  return blo === 0 && bhi === 0xffffffff ? GuestState.Zero : GuestState.Partial;
}

function compressedEntry(
  state: CheckState,
  hi: number,
  lo: number,
  bhi: number,
  blo: number,
  i: number,
  place: L2Place,
): void {
  const geo = state.image.geo;
  const hiBits = geo.csizeShift - 32; // offset bits held in hi
  if (hi & C.OFLAG_COPIED_HI) {
    const line = msg.compressedCopied(hex64(hi & (2 ** hiBits - 1), lo));
    state.say(line);
    state.counters.corruptions++;
    entryFinding(state, 'compressed-copied', line, hi, lo, i, place);
    hi = (hi & ~C.OFLAG_COPIED_HI) >>> 0;
  }
  if (state.dataFile) {
    const line = msg.compressedWithDataFile(i, hex64(hi, lo));
    state.say(line);
    state.counters.corruptions++;
    entryFinding(state, 'compressed-with-data-file', line, hi, lo, i, place);
    return;
  }
  if (bhi !== 0 || blo !== 0) {
    const line = msg.compressedWithBitmap(i, hex64(hi, lo));
    state.say(line);
    state.counters.corruptions++;
    entryFinding(state, 'compressed-with-bitmap', line, hi, lo, i, place);
    return;
  }
  const offHi = hi & (2 ** hiBits - 1);
  const offset = offHi * TWO32 + lo;
  const sectors = (Math.floor((hi & 0x3fffffff) / 2 ** hiBits) & geo.csizeMask) + 1;
  const size = sectors * C.SECTOR_SIZE - (lo & (C.SECTOR_SIZE - 1));
  if (state.fits(offset, size)) state.incSpan(offset, size, HostRole.Compressed);
  else state.incRange(offset, size, HostRole.Compressed, l2Where(state, hi, lo, i, place), hex64(offHi, lo));
  if (place.active && state.compressedSamples.length < MAX_COMPRESSED_SAMPLES)
    state.compressedSamples.push({
      offset,
      size,
      l2Offset: place.l2Offset,
      index: i,
      guestOffset: (place.l1Index * geo.l2Entries + i) * state.clusterSize,
    });
  if (place.active) {
    state.counters.allocatedClusters++;
    state.counters.compressedClusters++;
    state.counters.fragmentedClusters++;
  }
}

/** The finding's place for entry i of the table at `place`. */
export function l2Where(state: CheckState, hi: number, lo: number, i: number, place: L2Place): EntryFinding {
  return l2EntryWhere({ hi, lo }, i, place.l2Offset, place.l1Index, {
    active: place.active,
    snapshot: place.snapshot,
    l2Entries: state.image.geo.l2Entries,
    clusterSize: state.clusterSize,
  });
}

function entryFinding(
  state: CheckState,
  kind: string,
  line: string,
  hi: number,
  lo: number,
  i: number,
  place: L2Place,
): void {
  const w = l2Where(state, hi, lo, i, place);
  w.kind = kind;
  state.find(w);
  state.anomalies.add(kind, { qemuMessage: line, referrer: referrerOf(w) });
  state.anomalies.cut();
}
