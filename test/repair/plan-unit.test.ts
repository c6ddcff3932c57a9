// The pure parts of the repair (no QEMU needed for the logic, real images where it helps): the plan
// as data, rebuilt-structure placement, the overlay, journal regions, and the wizard's API flow
// (plan → review → apply that exact plan → verify → undo) including cancel and a stale plan.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import { qemuCheck, sha256, tempDir, writeBytes } from '../helpers/qemu.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { OverlayIO } from '../../engine/repair/overlay-io.js';
import { planRepair } from '../../engine/repair/planner.js';
import { placeRefcountStructure } from '../../engine/repair/refcount-rebuild.js';
import { regionsOf } from '../../engine/repair/journal.js';
import { allWrites, PHASES, planToJson, planToText } from '../../engine/repair/plan.js';
import { planRepairFile, repairFile, StaleImageError, undoRepair, verifyFile } from '../../engine/repair/index.js';
import { CancelToken } from '../../engine/base/task-control.js';
import { CancelledError } from '../../engine/base/errors.js';

const t = tempDir('q2d-repair-unit-');
afterAll(t.cleanup);
let n = 0;
const scenario = (name: string): string => {
  const dir = join(t.dir, `${name}-${n++}`);
  mkdirSync(dir);
  return SCENARIOS.find((s) => s.name === name)!.build(dir);
};

describe('rebuilt refcount structure placement', () => {
  it('places refblocks and the table only where allowed, and counts itself', () => {
    // 10 clusters in use, clusters 3 and 4 forbidden (old structures), 8 entries per refblock.
    const base = new Float64Array(12);
    for (const c of [0, 1, 2, 5, 6, 9, 10, 11]) base[c] = 1;
    const forbidden = new Set([3, 4]);
    const p = placeRefcountStructure(base, (c) => c >= 1 && !forbidden.has(c), 8, 64);
    const used = [
      ...p.refblocks.values(),
      ...Array.from({ length: p.reftableClusters }, (_, k) => p.reftableStart + k),
    ];
    for (const c of used) {
      expect(forbidden.has(c)).toBe(false);
      expect(base[c] ?? 0).toBe(0); // never on a cluster in use
      expect(p.counts[c]).toBe(1); // counts itself
    }
    expect(new Set(used).size).toBe(used.length);
    // Every group with a non-zero count has a refblock.
    for (let c = 0; c < p.counts.length; c++) if (p.counts[c]) expect(p.refblocks.has(Math.floor(c / 8))).toBe(true);
    expect(p.reftableClusters).toBe(1);
  });

  it('grows the table when the structure itself needs more groups', () => {
    const base = new Float64Array(40).fill(1);
    base[0] = 1;
    const p = placeRefcountStructure(base, (c) => c >= 1, 4, 16); // 2 entries per reftable cluster
    const groups = Math.max(...p.refblocks.keys()) + 1;
    expect(p.reftableClusters * 2).toBeGreaterThanOrEqual(groups); // the table covers every block
    expect(p.reftableClusters * 2).toBeLessThanOrEqual(2 * groups + 2); // with bounded slack
    for (let c = 0; c < p.counts.length; c++) if (p.counts[c]) expect(p.refblocks.has(Math.floor(c / 4))).toBe(true);
  });
});

describe('overlay and journal regions', () => {
  it('reads planned writes over the base, splitting overlapping patches', async () => {
    const base = new MemoryIO(new Uint8Array(32).fill(1));
    const ov = new OverlayIO(base, 32);
    await ov.write(4, new Uint8Array(8).fill(2));
    await ov.write(8, new Uint8Array(8).fill(3));
    await ov.write(40, new Uint8Array(4).fill(4));
    const r = await ov.read(0, 48);
    expect(Array.from(r.subarray(0, 20))).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1]);
    expect(r[36]).toBe(0);
    expect(r[41]).toBe(4);
    expect(await ov.size()).toBe(44);
    expect((await base.read(0, 32)).every((x) => x === 1)).toBe(true);
  });

  it('merges touching and overlapping writes into disjoint journal regions', () => {
    const w = (offset: number, len: number) => ({
      offset,
      structure: 'header' as const,
      oldBytes: new Uint8Array(len),
      newBytes: new Uint8Array(len),
      why: '',
    });
    expect(regionsOf([w(72, 8), w(48, 12), w(60, 12), w(100, 4), w(102, 8)])).toEqual([
      { offset: 48, length: 32 },
      { offset: 100, length: 10 },
    ]);
  });
});

describe('the plan as data', () => {
  it('is built from a memory image, ordered by phase, JSON- and text-printable', async () => {
    const f = scenario('cross-link-data');
    const io = new MemoryIO(new Uint8Array(readFileSync(f)), 'mem');
    const plan = await planRepair(io, { mode: 'all', name: 'mem' });
    const order = plan.steps.map((s) => PHASES.indexOf(s.phase));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(plan.steps.map((s) => s.phase)).toEqual(
      expect.arrayContaining(['mark-corrupt', 'raise', 'data', 'relink', 'header']),
    );
    // Each write records the bytes it replaces at that moment: the corrupt bit set, then cleared.
    const hdr = allWrites(plan).filter((w) => w.offset === 72);
    expect(hdr.map((w) => w.newBytes[7])).toEqual([2, 0]);
    expect(hdr[1]!.oldBytes[7]).toBe(2);
    const json = JSON.parse(JSON.stringify(planToJson(plan))) as {
      steps: Array<{ writes: Array<{ old: string; new: string }> }>;
    };
    expect(json.steps.flatMap((s) => s.writes)).toHaveLength(allWrites(plan).length);
    expect(planToText(plan).at(-1)).toMatch(/^Expected after repair: 0 errors, 0 leaked clusters/);
    // Planning never writes.
    expect(sha256(f)).toBe(sha256(f));
    expect(Buffer.compare(Buffer.from(io.snapshot()), readFileSync(f))).toBe(0);
  });
});

describe('wizard flow: plan → apply that plan → verify → undo', () => {
  it('applies exactly the reviewed plan, with progress, and undoes it', async () => {
    const f = scenario('refcount-zero');
    const before = sha256(f);
    const plan = await planRepairFile(f, 'all');
    expect(sha256(f)).toBe(before);
    const fractions: number[] = [];
    const journal = join(t.dir, 'wizard.journal');
    const out = await repairFile({
      image: f,
      mode: 'all',
      plan,
      journal,
      onProgress: (e) => fractions.push(e.fraction),
    });
    expect(out.plan).toBe(plan);
    expect(out.applied).toBe(true);
    expect(fractions.at(-1)).toBe(1);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    const v = await verifyFile(f);
    expect(v.counters.corruptions + v.counters.leaks + v.counters.checkErrors).toBe(0);
    expect(qemuCheck(f).status).toBe(0);
    await undoRepair(journal);
    expect(sha256(f)).toBe(before);
  });

  it('refuses a plan made before the image changed, writing nothing', async () => {
    const f = scenario('leak');
    const plan = await planRepairFile(f, 'all');
    writeBytes(f, 0x2000d, new Uint8Array([2])); // the refcount the plan lowers is no longer 1
    const changed = sha256(f);
    await expect(repairFile({ image: f, mode: 'all', plan, journal: false })).rejects.toThrow(StaleImageError);
    expect(sha256(f)).toBe(changed);
  });

  it('cancel before the first write leaves the image and makes no journal', async () => {
    const f = scenario('cross-link-data');
    const before = sha256(f);
    const cancel = new CancelToken();
    cancel.cancel();
    const journal = join(t.dir, 'cancelled.journal');
    await expect(repairFile({ image: f, mode: 'all', cancel, journal })).rejects.toThrow(CancelledError);
    expect(sha256(f)).toBe(before);
    expect(() => readFileSync(journal)).toThrow();
  });
});
