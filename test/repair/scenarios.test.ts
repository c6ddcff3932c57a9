// Every damaged scenario of the checker's suite, repaired by us (-r all) and, on a copy, by
// `qemu-img check -r all`. Judged by QEMU: the image is clean afterwards (or the part we refuse is
// named), guest data reads back wherever it still does after QEMU's repair (and, where QEMU loses it,
// ours still has it), and the undo journal restores the original bytes.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import { qemuCheck, sha256, tempDir } from '../helpers/qemu.js';
import { repairFile, undoRepair } from '../../engine/repair/index.js';
import { chunkHashes, dataChunks } from './guest-data.js';

// Build each scenario a second time with its byte patches switched off: the image before the damage.
vi.mock('../helpers/qemu.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../helpers/qemu.js')>();
  const off = (): boolean => (globalThis as { __q2dPristine?: boolean }).__q2dPristine === true;
  return {
    ...m,
    patchU64: (...a: Parameters<typeof m.patchU64>) => (off() ? undefined : m.patchU64(...a)),
    patchU32: (...a: Parameters<typeof m.patchU32>) => (off() ? undefined : m.patchU32(...a)),
    patchU16: (...a: Parameters<typeof m.patchU16>) => (off() ? undefined : m.patchU16(...a)),
    writeBytes: (...a: Parameters<typeof m.writeBytes>) => (off() ? undefined : m.writeBytes(...a)),
  };
});

const t = tempDir('q2d-repair-');
afterAll(t.cleanup);

/** The check itself aborts (QEMU: exit 1 before any repair); we change nothing either. */
const ABORTS = new Set([
  'snapshot-count-too-large',
  'snapshot-offset-unaligned',
  'bitmap-table-entry-invalid-in-use',
  'bitmap-directory-type-invalid',
]);

/**
 * Parts we refuse because a fix would have to guess (what a human must decide is printed). QEMU
 * leaves errors in all of these too, except the last one, where it invents a snapshot entry from
 * the zeros past the end of the file. (Pointers to data nothing can read — unaligned, wholly past
 * the end of the file — are dropped by default and end clean; `--cautious` refuses them: trust.test.ts.
 * A compressed stream running past the end still decompresses, so it stays refused.)
 */
const REFUSED = new Set([
  'compressed-beyond-eof',
  'ext-l2-alloc-and-zero',
  'ext-l2-unallocated-with-alloc-bits',
  'ext-l2-compressed-with-bitmap',
  'external-data-compressed',
  'external-data-with-snapshot',
  'snapshot-table-beyond-eof',
]);

/** Scenarios where `qemu-img check -r all` loses guest data that our repair keeps. */
const QEMU_LOSES = new Set(['l2-table-unaligned', 'l2-beyond-eof', 'l2-points-into-l1', 'l1-table-beyond-eof']);

const corruptions = (j: Record<string, unknown> | undefined): number => Number(j?.corruptions ?? 0);

describe('repair of every damaged scenario, judged by qemu-img', () => {
  for (const s of SCENARIOS.filter((x) => !x.clean)) {
    it(s.name, async () => {
      const dir = join(t.dir, s.name);
      const pdir = join(dir, 'pristine');
      mkdirSync(pdir, { recursive: true });
      (globalThis as { __q2dPristine?: boolean }).__q2dPristine = true;
      let pristine: string;
      try {
        pristine = s.build(pdir);
      } finally {
        (globalThis as { __q2dPristine?: boolean }).__q2dPristine = false;
      }
      const f = s.build(dir);
      const origSha = sha256(f);
      const orig = qemuCheck(f);
      const q = join(dir, 'qemu-repaired.qcow2');
      copyFileSync(f, q);
      qemuCheck(q, 'all');
      const qAfter = qemuCheck(q);

      const journal = join(dir, 'undo.journal');
      const out = await repairFile({ image: f, mode: 'all', journal });
      const ours = qemuCheck(f);

      if (ABORTS.has(s.name)) {
        expect(out.plan.failed).toBeDefined();
        expect(out.applied).toBe(false);
        expect(sha256(f)).toBe(origSha);
        return;
      }
      if (REFUSED.has(s.name)) {
        expect(out.plan.refusals.length).toBeGreaterThan(0);
        for (const r of out.plan.refusals) expect(r.decide.length).toBeGreaterThan(10);
        expect(corruptions(ours.json)).toBeLessThanOrEqual(corruptions(orig.json));
        expect(ours.status).not.toBe(1);
      } else {
        expect(out.plan.refusals).toEqual([]);
        expect(ours.status, ours.stderr).toBe(0);
        expect(ours.json?.corruptions).toBeUndefined();
        expect(ours.json?.leaks).toBeUndefined();
        expect(ours.json?.['check-errors']).toBe(0);
      }

      // Guest data: wherever the data written before the damage still reads back after QEMU's
      // repair, it reads back after ours.
      const chunks = dataChunks(pristine);
      const P = chunkHashes(pristine, chunks, join(dir, 'p.raw'))!;
      const Q = chunkHashes(q, chunks, join(dir, 'q.raw'));
      const O = chunkHashes(f, chunks, join(dir, 'o.raw'));
      let qemuLost = 0;
      for (const c of chunks) {
        const want = P.get(c);
        if (Q?.get(c) === want) expect(O?.get(c), `${s.name}: guest chunk ${c}`).toBe(want);
        else if (O?.get(c) === want) qemuLost++;
      }
      if (QEMU_LOSES.has(s.name)) {
        expect(qAfter.status === 0 && Q !== undefined && qemuLost === 0).toBe(false);
        expect(qemuLost, `${s.name}: chunks QEMU loses and we keep`).toBeGreaterThan(0);
      }

      // Undo: the original bytes, byte for byte.
      if (out.applied) {
        await undoRepair(journal);
        expect(sha256(f)).toBe(origSha);
      }
    });
  }
});
