// Word-at-a-time helpers for the checker's hot loops (the fast L2 walk and its bookkeeping): typed
// array views over table bytes and the per-cluster arrays, no allocation per entry.
/** Host byte order: the fast L2 loop reads big-endian entries as native words. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Length of the run of entries starting at entry i (word stop is the limit) whose high word is
 * `rhi` (raw) and whose offset grows by one cluster (2^cb bytes) each time from `lo` (host order).
 * The entries are big-endian: instead of byte-swapping every word, the expected raw word is swapped
 * once per stretch and then grows by the cluster size's bit as it sits in the swapped word, until
 * the byte holding that bit carries into the next one (every 256 entries with 64 KiB clusters).
 * A small function of its own: the JIT compiles it (and replaces it on the stack) cheaply, instead
 * of the whole L2 walk. It sees nearly every entry of a full image.
 */
export function runLength(u: Int32Array, i: number, stop: number, rhi: number, lo: number, cb: number): number {
  if (cb >= 16) return runLength16(u, i, stop, rhi, lo, cb);
  const byte = cb >>> 3; // the byte of the host-order word that holds bit cb
  const bit = cb & 7;
  const step = 1 << ((3 - byte) * 8 + bit); // that bit, in the raw (swapped) word
  let next = (lo + (1 << cb)) | 0; // host-order low word expected at p
  let p = 2 * i + 2;
  while (p < stop && next !== 0) {
    // Entries until bit cb's byte carries over: the raw word grows by `step` each.
    const k = (256 - ((next >>> (8 * byte)) & 0xff)) >>> bit;
    const end = Math.min(stop, p + 2 * k);
    let w = (next << 24) | ((next & 0xff00) << 8) | ((next >>> 8) & 0xff00) | (next >>> 24); // bswap32, inline
    while (p < end && u[p] === rhi && u[p + 1] === w) {
      p += 2;
      w = (w + step) | 0;
    }
    if (p < end) break;
    next = (next + k * (1 << cb)) | 0; // 0 once past 4 GiB: the high word changes, the run ends
  }
  return (p >>> 1) - i;
}

/**
 * runLength for clusters of 64 KiB and more: the low word's bottom half is zero, so the raw word
 * is just its top half H (which grows by 2^(cb-16)) with its two bytes swapped, no stretches.
 */
function runLength16(u: Int32Array, i: number, stop: number, rhi: number, lo: number, cb: number): number {
  const step = 1 << (cb - 16);
  let h = (lo >>> 16) + step; // top half of the low word expected at p; 65536 and up: past 4 GiB
  let p = 2 * i + 2;
  // Four entries a time while they all fit (fewer loop tests per entry), then one by one.
  const last4 = 65536 - 3 * step;
  while (
    p + 8 <= stop &&
    h < last4 &&
    u[p] === rhi &&
    u[p + 2] === rhi &&
    u[p + 4] === rhi &&
    u[p + 6] === rhi &&
    u[p + 1] === ((h >>> 8) | ((h & 0xff) << 8)) &&
    u[p + 3] === (((h + step) >>> 8) | (((h + step) & 0xff) << 8)) &&
    u[p + 5] === (((h + 2 * step) >>> 8) | (((h + 2 * step) & 0xff) << 8)) &&
    u[p + 7] === (((h + 3 * step) >>> 8) | (((h + 3 * step) & 0xff) << 8))
  ) {
    p += 8;
    h += 4 * step;
  }
  while (p < stop && h < 65536 && u[p] === rhi && u[p + 1] === ((h >>> 8) | ((h & 0xff) << 8))) {
    p += 2;
    h += step;
  }
  return (p >>> 1) - i;
}

/** Reverse the bytes of a 32-bit word (big-endian <-> little-endian), as a signed int32. */
export function bswap32(x: number): number {
  return (x << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}

/** Whether bytes [from, to) of `a` are all zero (a word at a time; `a` must start a buffer). */
export function allZero(a: Uint8Array, from: number, to: number): boolean {
  let c = from;
  // Short stretches (single clusters of a fragmented image) byte by byte: no word view to allocate.
  if (a.byteOffset !== 0 || to - from < 64) {
    for (; c < to; c++) if (a[c] !== 0) return false;
    return true;
  }
  for (; c < to && (c & 3) !== 0; c++) if (a[c] !== 0) return false;
  const w = new Int32Array(a.buffer, 0, to >>> 2);
  let acc = 0;
  const wEnd = to >>> 2;
  for (let i = c >>> 2; i < wEnd; i++) acc |= w[i]!;
  if (acc !== 0) return false;
  for (c = Math.max(c, wEnd * 4); c < to; c++) if (a[c] !== 0) return false;
  return true;
}

/** Whether bytes [from, to) of `a` are all zero. */
export function allZeroBytes(a: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (a[i] !== 0) return false;
  return true;
}

/** Set bits [from, to) of a bitmap (LSB first within each byte), whole bytes at a time. */
export function setBitRange(bits: Uint8Array, from: number, to: number): void {
  let b = from;
  while (b < to && (b & 7) !== 0) {
    bits[b >>> 3] = bits[b >>> 3]! | (1 << (b & 7));
    b++;
  }
  const full = (to - b) >>> 3;
  if (full > 0) {
    bits.fill(0xff, b >>> 3, (b >>> 3) + full);
    b += full * 8;
  }
  for (; b < to; b++) bits[b >>> 3] = bits[b >>> 3]! | (1 << (b & 7));
}

/**
 * Index of the first 8-byte entry at or after i (below n) that is not zero, or n: zero stretches
 * of a table (a refcount table is mostly empty) skipped a word pair at a time.
 */
export function nextNonZeroEntry(table: Uint8Array, i: number, n: number): number {
  if ((table.byteOffset & 3) !== 0) {
    for (; i < n; i++) if (!allZeroBytes(table, 8 * i, 8 * i + 8)) return i;
    return n;
  }
  const w = new Int32Array(table.buffer, table.byteOffset, 2 * n);
  while (i < n && (w[2 * i]! | w[2 * i + 1]!) === 0) {
    i++;
    // Whole zero stretches compared natively (a refcount table is megabytes of zeros).
    while (
      (i & (ZERO_STRETCH - 1)) === 0 &&
      i + ZERO_STRETCH <= n &&
      isZero(table.subarray(8 * i, 8 * (i + ZERO_STRETCH)), ZEROS)
    )
      i += ZERO_STRETCH;
  }
  return i;
}

/** Entries skipped at once by nextNonZeroEntry when all zero, and their zero bytes. */
const ZERO_STRETCH = 512;
const ZEROS = new Uint8Array(8 * ZERO_STRETCH);

/** Whether `bytes` are all zero: a native comparison with `zeros` (at least as long). */
export function isZero(bytes: Uint8Array, zeros: Uint8Array): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(
    Buffer.from(zeros.buffer, zeros.byteOffset, bytes.length),
  );
}
