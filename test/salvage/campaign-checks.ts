// Shared assertions for the salvage campaign (bench/sections/50-salvage.ts builds and measures).
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildImage,
  damagesFor,
  IMAGES,
  runScenario,
  formatTable,
  type ScenarioResult,
} from '../../bench/sections/50-salvage.js';
import { tempDir } from '../helpers/qemu.js';

/**
 * The campaign for some of the bench's images: every damage kind, salvaged to raw and to qcow2,
 * measured against qemu-img convert of the undamaged image. Split over several test files so the
 * images run in parallel.
 */
export function campaign(names: string[]): void {
  const t = tempDir('q2d-salvage-');
  afterAll(t.cleanup);
  for (const name of names) {
    describe(`salvage campaign: ${name}`, () => {
      const spec = IMAGES.find((s) => s.name === name)!;
      const img = buildImage(t.dir, spec);
      const results: ScenarioResult[] = [];
      damagesFor(img).forEach((d, n) => {
        it(`${d.kind} (${d.where})`, async () => {
          const r = await runScenario(t.dir, img, d, n, { qcow2: true });
          results.push(r);
          assertScenario(r);
        });
      });
      it('prints the recovery table', () => {
        expect(results.length).toBe(damagesFor(img).length);
        console.log(formatTable(results).join('\n'));
      });
    });
  }
}

export function assertScenario(r: ScenarioResult): void {
  const label = `${r.image} / ${r.damage} / ${r.where}`;
  const active = r.report.views.find((v) => v.kind === 'active');
  expect(active, label).toBeDefined();
  // Never invent data: every non-zero output byte equals the undamaged disk.
  expect(r.active.wrong, `${label}: wrong bytes`).toBe(0);
  expect(r.imageUnchanged, `${label}: image modified`).toBe(true);
  expect(r.claimsHold, `${label}: output does not match the report`).toBe(true);
  if (r.presentBytes !== undefined) {
    // Truncation / missing backing: everything physically present comes back.
    expect(r.active.recovered, `${label}: present data not recovered`).toBeGreaterThanOrEqual(r.presentBytes);
  } else if (r.expectFull) {
    // 100% outside the destroyed tables' ranges (everything, when no table was destroyed).
    expect(r.active.recoveredOutside, `${label}: recovered outside lost ranges`).toBe(r.active.knownOutside);
  }
  // Destroyed L2 tables: the report names their guest ranges as lost.
  for (const [s, e] of r.lostRanges) {
    const covered = active!.lost.some((l) => l.start <= s && l.end >= e);
    expect(covered, `${label}: lost range 0x${s.toString(16)}..0x${e.toString(16)} not reported`).toBe(true);
  }
  if (r.snapshot && r.presentBytes === undefined) {
    expect(r.snapshot.wrong, `${label}: snapshot wrong bytes`).toBe(0);
    expect(r.snapshot.recoveredOutside, `${label}: snapshot disk`).toBe(r.snapshot.knownOutside);
  }
  // The verdict is true: status 0 ("nothing lost", every position certain) means every byte of the
  // undamaged disk came back; without a guess, no recovered byte is wrong either way (checked above).
  if (r.report.outcome?.exitCode === 0) {
    expect(r.active.recovered, `${label}: "nothing lost" but bytes missing`).toBe(r.active.known);
    if (r.snapshot)
      expect(r.snapshot.recovered, `${label}: "nothing lost" but snapshot bytes missing`).toBe(r.snapshot.known);
  }
  if (r.qcow2Check) {
    expect(r.qcow2Check.clean, `${label}: qemu-img check of the qcow2 output (exit ${r.qcow2Check.status})`).toBe(true);
    expect(r.qcow2Check.sameAsRaw, `${label}: qcow2 output reads back differently from the raw output`).toBe(true);
  }
}
