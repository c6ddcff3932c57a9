// The repair-plan fuzz run's memory finding: a one-hour run flagged 19,861 cases as over its memory
// bound and its summary line grew too long to parse. The engine held nothing across cases; the harness
// measured heap + array buffers without collecting garbage (counting garbage and freed buffers V8 had
// not yet released) and recorded one finding per case. These tests hold the engine and the harness to
// it: the cases keep nothing after a plan, memory is judged after GC, and one cause is one finding.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/qemu.js';
import { startCoverage } from './structured/coverage.js';
import { applyAll } from './structured/mutations.js';
import { causeOf, type FuzzCase, fuzz, settledMemory } from './structured/runner.js';
import { makeSeeds, type Seed } from './structured/seeds.js';
import { IMAGE_RUNNERS } from './structured/targets.js';

const t = tempDir('q2d-sfuzz-mem-');
afterAll(t.cleanup);
let seeds: Seed[];
beforeAll(async () => {
  await startCoverage();
  seeds = makeSeeds(join(t.dir, 'seeds'));
}, 120_000);

const MiB = 2 ** 20;
/** The run's first flagged case, and a case that allocates three L1 tables at QEMU's limit (32 MiB each). */
const FIRST_FLAGGED: FuzzCase = {
  seed: 'c256k-v2-snapshot',
  mutations: [{ k: 'refcount', b: 340057, i: 129601, v: 185296 }],
};
const LARGEST_L1: FuzzCase = {
  seed: 'c512-zstd-refcount64',
  mutations: [
    { k: 'limit', c: 288189, v: 134793 },
    { k: 'compressed', e: 6, off: 2, n: 19, copied: false },
  ],
};

const bytesOf = (c: FuzzCase): Uint8Array => {
  if (!('seed' in c)) throw new Error('an image case');
  const s = seeds.find((x) => x.name === c.seed)!;
  return applyAll(s.bytes, s.layout, c.mutations).bytes;
};

describe('fuzz memory: nothing held across repair-plan cases, one finding per cause', () => {
  it('the repair planner keeps nothing after a plan: 16 runs of the flagged cases hold under 8 MiB after GC', async () => {
    const cases = [FIRST_FLAGGED, LARGEST_L1].map(bytesOf);
    const plan = async (): Promise<void> => {
      for (const b of cases) await IMAGE_RUNNERS['repair-plan'](b).catch(() => undefined);
    };
    await plan(); // compiled code and feedback are not a leak
    const before = await settledMemory();
    for (let i = 0; i < 8; i++) await plan();
    const held = (await settledMemory()) - before;
    expect(held / MiB).toBeLessThan(8);
  }, 300_000);

  it('the harness judges memory after GC and counts one cause once: 12 cases of 32 MiB tables under a 16 MiB bound', async () => {
    const s = await fuzz({
      target: 'repair-plan',
      seeds,
      seed: 1,
      maxCases: seeds.length + 12,
      caseTimeMs: 60_000,
      memoryLimit: 16 * MiB,
      corpus: Array.from({ length: 12 }, () => LARGEST_L1),
    });
    // What each case allocates is over the bound and is reported, once, with how many cases did it...
    const allocated = s.findings.filter((f) => f.message.startsWith('one case allocated'));
    expect(allocated.length).toBe(1);
    expect(allocated[0]!.count).toBeGreaterThan(1);
    // ...but nothing is held afterwards, and no other finding appears.
    expect(s.findings.map((f) => f.cause)).toEqual([allocated[0]!.cause]);
    expect(s.cases).toBe(seeds.length + 12);
  }, 300_000);

  it('a cause ignores the numbers in a message and keys on the first engine frame (file and line)', () => {
    const at = (n: number, file: string): string =>
      `TypeError: offset ${n} out of range\n    at f (file:///x/node_modules/y.js:1:1)\n    at g (file:///x/build/engine/${file}:12:7)`;
    expect(causeOf('crash', at(1, 'a.js'))).toBe(causeOf('crash', at(99, 'a.js')));
    expect(causeOf('crash', at(1, 'a.js'))).not.toBe(causeOf('crash', at(1, 'b.js')));
    expect(causeOf('memory', 'memory held after GC grew by 1540 MiB')).toBe(
      causeOf('memory', 'memory held after GC grew by 3072 MiB'),
    );
    expect(causeOf('hang', 'no answer within 60000 ms')).not.toBe(causeOf('memory', 'no answer within 60000 ms'));
  });
});
