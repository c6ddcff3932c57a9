// Shared assertions for the salvage campaign (bench/sections/50-salvage.ts builds and measures).
import { expect } from 'vitest';
import type { ScenarioResult } from '../../bench/sections/50-salvage.js';

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
  if (r.qcow2Check) {
    expect(r.qcow2Check.clean, `${label}: qemu-img check of the qcow2 output (exit ${r.qcow2Check.status})`).toBe(true);
    expect(r.qcow2Check.sameAsRaw, `${label}: qcow2 output reads back differently from the raw output`).toBe(true);
  }
}
