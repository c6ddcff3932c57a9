// The checker's word-at-a-time run detection against a plain entry-by-entry reading, for every
// cluster size: runs that cross byte carries of the swapped low word, runs that reach 4 GiB (where
// the high word changes), and runs broken by a wrong offset, a different flag or the stop limit.
import { describe, expect, it } from 'vitest';
import { bswap32, nextNonZeroEntry, runLength } from '../../engine/check/words.js';

/** L2 table bytes (big-endian entries) as the checker's native-word view. */
function table(entries: bigint[]): Int32Array {
  const b = new Uint8Array(entries.length * 8);
  const dv = new DataView(b.buffer);
  entries.forEach((e, i) => dv.setBigUint64(8 * i, e));
  return new Int32Array(b.buffer);
}

/** The run's length read one entry at a time: same high word, offset one cluster further each. */
function naive(entries: bigint[], i: number, stopEntry: number, cs: bigint): number {
  let n = 1;
  while (
    i + n < stopEntry &&
    entries[i + n] === entries[i]! + BigInt(n) * cs &&
    entries[i + n]! >> 32n === entries[i]! >> 32n
  )
    n++;
  return n;
}

describe('runLength', () => {
  const COPIED = 1n << 63n;
  for (let cb = 9; cb <= 21; cb++) {
    it(`matches an entry-by-entry reading with ${2 ** cb}-byte clusters`, () => {
      const cs = 1n << BigInt(cb);
      let seed = cb * 7919;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      for (let trial = 0; trial < 40; trial++) {
        const n = 64 + rand(600);
        // Start anywhere, some just below a 4 GiB boundary so that runs reach it.
        const startCluster =
          trial % 3 === 0 ? (BigInt(1 + rand(5)) << (32n - BigInt(cb))) - BigInt(rand(n)) : BigInt(1 + rand(1 << 20));
        const entries: bigint[] = [];
        for (let i = 0; i < n; i++) entries.push(COPIED | ((startCluster + BigInt(i)) * cs));
        // Break the run here and there: a skipped cluster, a flag, a zero entry.
        for (let b = rand(4); b > 0; b--) {
          const at = 1 + rand(n - 1);
          const kind = rand(3);
          entries[at] = kind === 0 ? entries[at]! + cs : kind === 1 ? entries[at]! & ~COPIED : 0n;
        }
        const u = table(entries);
        for (const i of [0, rand(n), n - 1]) {
          const e = entries[i]!;
          if (e === 0n) continue;
          const stopEntry = i + 1 + rand(n - i);
          const rhi = u[2 * i]!;
          const lo = bswap32(u[2 * i + 1]!) >>> 0;
          expect(runLength(u, i, 2 * stopEntry, rhi, lo, cb), `cb ${cb} trial ${trial} at ${i}`).toBe(
            naive(entries, i, stopEntry, cs),
          );
        }
      }
    });
  }
});

describe('nextNonZeroEntry', () => {
  it('finds every non-zero entry of a mostly empty table, across whole zero stretches', () => {
    const n = 5000;
    const bytes = new Uint8Array(8 * n + 8).subarray(8); // an offset view, as tables often are
    const set = [0, 1, 511, 512, 513, 1024, 2047, 3000, 4999];
    for (const i of set) bytes[8 * i + (i % 8)] = 1;
    const found: number[] = [];
    for (let i = nextNonZeroEntry(bytes, 0, n); i < n; i = nextNonZeroEntry(bytes, i + 1, n)) found.push(i);
    expect(found).toEqual(set);
    const unaligned = new Uint8Array(8 * 600 + 1).subarray(1);
    unaligned[8 * 599 + 7] = 9;
    expect(nextNonZeroEntry(unaligned, 0, 600)).toBe(599);
    expect(nextNonZeroEntry(new Uint8Array(8 * 1100), 3, 1100)).toBe(1100);
  });
});
