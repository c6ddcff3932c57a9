// Structure-aware fuzzing, the short deterministic run: valid images made by qemu-img, mutated by
// fast-check generators that keep them parseable deep into the tables, steered by V8 coverage, over
// open/info, check, the repair planner (dry run), salvage's scan and the serve contract. The long
// run is `npm run fuzz -- --time S [--target NAME]` (scripts/fuzz.mjs).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/qemu.js';
import { startCoverage } from './structured/coverage.js';
import { type FuzzCase, fuzz, runCase, type FuzzStats } from './structured/runner.js';
import longRunFindings from './structured/long-run-findings.json' with { type: 'json' };
import { makeSeeds, type Seed } from './structured/seeds.js';
import { IMAGE_RUNNERS, TARGETS, type TargetName } from './structured/targets.js';

const t = tempDir('q2d-sfuzz-');
afterAll(t.cleanup);
let seeds: Seed[];
beforeAll(async () => {
  await startCoverage();
  seeds = makeSeeds(join(t.dir, 'seeds'));
}, 120_000);

/** Cases per target in `npm test`: seconds, not minutes. FUZZ_SCALE=k runs k times as many. */
const SCALE = Math.max(0.1, Number(process.env.FUZZ_SCALE ?? 1));
const CASES: Record<TargetName, number> = {
  info: 150,
  check: 100,
  'repair-plan': 60,
  'salvage-scan': 80,
  contract: 400,
};
const SEED = 0x5eed_0013;
const CASE_TIME_MS = 60_000;
const MEMORY_LIMIT = 1024 * 1024 * 1024;

const report = (s: FuzzStats): string =>
  s.findings
    .map((f) => `${f.kind}: ${f.message.split('\n')[0]}\n  case: ${JSON.stringify(f.case)}\n  ${f.whats.join('; ')}`)
    .join('\n');

describe('structure-aware fuzzing (fast-check, coverage-steered)', () => {
  it('the seeds are valid: every image target accepts every unmutated seed', async () => {
    for (const s of seeds)
      for (const [name, run] of Object.entries(IMAGE_RUNNERS))
        await expect(run(s.bytes), `${s.name} ${name}`).resolves.toBeUndefined();
    // The layouts reach deep: pointers into L2 tables, snapshot and bitmap directories, compressed descriptors.
    const all = seeds.flatMap((s) => s.layout.pointers.map((p) => p.name));
    expect(all.some((n) => /\.l2\[/.test(n))).toBe(true);
    expect(all.some((n) => n.startsWith('snapshot['))).toBe(true);
    expect(all.some((n) => n.startsWith('bitmap['))).toBe(true);
    expect(seeds.some((s) => s.layout.compressed.length > 0)).toBe(true);
  });

  for (const target of TARGETS) {
    it(`${target}: only expected errors, no hang, bounded memory; coverage grows the corpus`, async () => {
      const s = await fuzz({
        target,
        seeds,
        seed: SEED,
        maxCases: Math.round(CASES[target] * SCALE),
        caseTimeMs: CASE_TIME_MS,
        memoryLimit: MEMORY_LIMIT,
        stopAtFinding: true,
      });
      console.log(
        `${target}: ${s.cases} cases in ${s.ms} ms, ${s.accepted} accepted, ${s.refused} refused, corpus ${s.corpus.length}, ${s.features} features`,
      );
      expect(report(s)).toBe('');
      expect(s.cases).toBe(Math.round(CASES[target] * SCALE));
      // Not hollow: coverage steered the run (cases that reached new code were kept), and hostile
      // inputs both pass and are refused.
      expect(s.corpus.length).toBeGreaterThan(5);
      // (Most random requests are refused by the validators; images are mostly still read.)
      expect(s.accepted).toBeGreaterThan(target === 'contract' ? 0 : s.cases / 10);
      expect(s.refused).toBeGreaterThan(0);
    }, 300_000);
  }

  // What the long runs found, replayed: seven repair-plan cases killed by the watchdog (a bitmap
  // table_size at QEMU's limit read as 1 GiB; thousands of planned entry fixes in a quadratic overlay),
  // and two salvage-scan cases that killed V8 (a hostile disk size made salvage list billions of free
  // L1 slots). Now each ends with a typed result.
  it('the cases the long runs found end with typed results', async () => {
    expect(longRunFindings.length).toBe(9);
    for (const f of longRunFindings as Array<{ target: TargetName; case: FuzzCase }>) {
      const r = await runCase(f.target, f.case, seeds, CASE_TIME_MS);
      expect('finding' in r ? r.finding : undefined, JSON.stringify(f.case)).toBeUndefined();
    }
  }, 600_000);
});
