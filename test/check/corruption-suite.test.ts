// Every scenario: QEMU 7.2 and we must agree (counters, exit code, per-problem lines in order), and
// checking must not change a byte of the image.
import { afterAll, describe, expect, it } from 'vitest';
import { qemuCheck, qemuCheckHuman, sha256, tempDir } from '../helpers/qemu.js';
import { countersFromQemuJson, ourCheck, ourProblemLines, qemuProblemLines } from './harness.js';
import { SCENARIOS } from './scenarios.js';

const tmp = tempDir('q2d-check-');
afterAll(() => tmp.cleanup());

describe('corruption suite vs qemu-img check', () => {
  it('has at least 40 damaged scenarios and a clean matrix', () => {
    expect(SCENARIOS.filter((s) => !s.clean).length).toBeGreaterThanOrEqual(40);
    expect(SCENARIOS.filter((s) => s.clean).length).toBeGreaterThanOrEqual(15);
  });

  for (const s of SCENARIOS) {
    it(`${s.name} (${s.ref})`, async () => {
      const f = s.build(tmp.dir);
      const before = sha256(f);
      const q = qemuCheck(f);
      const qh = qemuCheckHuman(f);
      expect(q.status, `scenario premise: qemu-img exit code\n${q.stderr}`).toBe(s.qemuExit);
      const ours = await ourCheck(f);
      expect(sha256(f), 'checking must not write').toBe(before);
      expect(ours.exit).toBe(q.status);
      if (q.json) {
        const c = ours.result!.counters;
        expect({
          checkErrors: c.checkErrors,
          corruptions: c.corruptions,
          leaks: c.leaks,
          imageEndOffset: c.imageEndOffset,
          totalClusters: c.totalClusters,
          allocatedClusters: c.allocatedClusters,
          fragmentedClusters: c.fragmentedClusters,
          compressedClusters: c.compressedClusters,
        }).toEqual(countersFromQemuJson(q.json));
      } else {
        expect(ours.result?.failed ?? ours.openError).toBeDefined();
      }
      if (s.compareLines) expect(ourProblemLines(ours.lines)).toEqual(qemuProblemLines(qh.stderr));
      if (s.clean) expect(ours.result!.anomalies).toEqual([]);
      for (const kind of s.extraKinds ?? []) {
        const a = ours.result!.anomalies.find((x) => x.kind === kind);
        expect(a, `anomaly ${kind}`).toBeDefined();
      }
      // QEMU-visible problems all become anomalies with an explanation and a fix.
      if (ours.result && (ours.result.counters.corruptions || ours.result.counters.leaks)) {
        const serious = ours.result.anomalies.filter(
          (a) => !a.beyondQemu && (a.severity === 'error' || a.severity === 'leak'),
        );
        expect(serious.length).toBeGreaterThan(0);
        for (const a of serious) {
          expect(a.explanation.length).toBeGreaterThan(20);
          expect(a.fix.length).toBeGreaterThan(5);
        }
      }
    });
  }
});
