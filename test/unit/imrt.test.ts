// The checker's reference table against a plain array of counts: random runs, single counts and
// writes over pages, including runs that continue or precede a page's run across a few clusters
// counted once (the layout of a preallocated image), overlapping runs and wide values.
import { describe, expect, it } from 'vitest';
import { Imrt, IMRT_PAGE } from '../../engine/check/imrt.js';

function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

function agree(t: Imrt, model: Uint8Array, where: string): void {
  for (let k = 0; k < model.length; k++) {
    if (t.get(k) !== model[k]) throw new Error(`${where}: cluster ${k} reads ${t.get(k)}, expected ${model[k]}`);
  }
}

describe('Imrt', () => {
  it('counts like a plain array through random runs, counts and writes', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = rng(seed);
      const n = 3 * IMRT_PAGE + rand(IMRT_PAGE);
      const t = new Imrt(n);
      const model = new Uint8Array(n);
      let cursor = rand(50);
      for (let op = 0; op < 400; op++) {
        const kind = rand(6);
        if (kind <= 1) {
          // A run: mostly just after the last one (maybe past a gap of a few), sometimes anywhere.
          const from = kind === 0 ? Math.min(n - 1, cursor + rand(3) * rand(70)) : rand(n);
          const to = Math.min(n, from + 1 + rand(kind === 0 ? 3000 : 200));
          const fresh = model.subarray(from, to).every((v) => v === 0);
          expect(t.countFresh(from, to), `seed ${seed} op ${op} countFresh(${from}, ${to})`).toBe(fresh);
          if (fresh) model.fill(1, from, to);
          cursor = to;
        } else if (kind === 2) {
          // A single count (an L2 table or a refcount block), often right after the last run.
          const k = rand(3) === 0 ? rand(n) : Math.min(n - 1, cursor);
          if (model[k]! < 250) {
            t.increment(k, t.get(k));
            model[k]!++;
          }
          cursor = k + 1;
        } else if (kind === 3) {
          const k = rand(n);
          const v = rand(256);
          t.set(k, v);
          model[k] = v;
        } else if (kind === 4) {
          // Counted one by one, as the checker does for runs that were not fresh.
          const from = rand(n);
          const to = Math.min(n, from + 1 + rand(100));
          t.prepareBytes(from, to, true);
          for (let k = from; k < to; k++) {
            if (t.bytes[k]! < 250) {
              t.bytes[k]!++;
              model[k]!++;
            }
          }
        } else {
          const from = rand(n);
          const to = Math.min(n, from + 1 + rand(IMRT_PAGE));
          t.prepareBytes(from, to, false);
          // One comparison per element, not one expect: this loop runs millions of times.
          for (let k = from; k < to; k++) {
            if (t.bytes[k] !== model[k])
              throw new Error(`seed ${seed} op ${op}: bytes[${k}] = ${t.bytes[k]}, expected ${model[k]}`);
          }
        }
        if (op % 50 === 0) agree(t, model, `seed ${seed} op ${op}`);
      }
      agree(t, model, `seed ${seed} end`);
      // What the runs and hulls claim must hold of the counts.
      for (let pa = 0; pa < n; pa += IMRT_PAGE) {
        const pb = Math.min(n, pa + IMRT_PAGE);
        if (t.untouched(pa)) expect(model.subarray(pa, pb).every((v) => v === 0)).toBe(true);
        if (t.runCovers(pa, pb)) expect(model.subarray(pa, pb).every((v) => v === 1)).toBe(true);
      }
      expect(Array.from(t.dense())).toEqual(Array.from(model));
    }
  });

  it('keeps a preallocated layout (table cluster, then its data) as runs, never written', () => {
    const n = 8 * IMRT_PAGE;
    const t = new Imrt(n);
    // Header, then per table: the table's cluster, then 3000 data clusters.
    t.increment(0, 0);
    for (let k = 1; k + 3001 <= n; k += 3001) {
      t.increment(k, t.get(k));
      expect(t.countFresh(k + 1, k + 3001)).toBe(true);
    }
    expect(t.bytes.every((v) => v === 0)).toBe(true);
    const covered = Math.floor((n - 1) / 3001) * 3001 + 1;
    for (let pa = 0; pa + IMRT_PAGE <= covered; pa += IMRT_PAGE) expect(t.runCovers(pa, pa + IMRT_PAGE)).toBe(true);
    expect(
      t
        .dense()
        .subarray(0, covered)
        .every((v) => v === 1),
    ).toBe(true);
  });
});
