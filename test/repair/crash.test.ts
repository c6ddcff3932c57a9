// The repair itself under the crash lab: every crash state of its write log (each prefix, random
// subsets of the writes after the last flush, torn multi-sector writes) is judged by qemu-img.
// No state is worse than the damaged original (no new corruption, no internal errors), and a second
// repair from any state yields a clean image whose guest data equals a one-shot repair's.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import { qemuCheck, run, tempDir } from '../helpers/qemu.js';
import { repairIO } from '../../engine/repair/index.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { RecordingIO } from '../../engine/io/recording-io.js';
import { CrashStateBuilder, describeCrashState, enumerateCrashStates } from '../../engine/lab/crash-states.js';

const t = tempDir('q2d-repair-crash-');
afterAll(t.cleanup);

// One of each kind of write sequence: in-place lowering, a cross-link copy, a rebuild, a re-link,
// a snapshot-table rewrite, a lazy-refcount crash, COPIED fixes, an entry fix, a rebuild over an
// unreadable refcount block, and guest data sitting in a refcount block.
const NAMES = [
  'leak',
  'cross-link-data',
  'refcount-zero',
  'l2-beyond-eof',
  'snapshot-entry-incomplete',
  'lazy-refcounts-crash',
  'copied-clear-l1',
  'prealloc-zero-unaligned',
  'refblock-unaligned',
  'data-points-into-refblock',
  'cross-link-l2-tables',
  'bitmaps-autoclear-cleared',
  'snapshot-extra-data-too-large',
  'l1-table-beyond-eof',
  'snapshot-l1-too-large',
];

const num = (j: Record<string, unknown> | undefined, k: string): number => Number(j?.[k] ?? 0);

describe('crash states of a repair', () => {
  for (const name of NAMES) {
    it(name, async () => {
      const dir = join(t.dir, name);
      mkdirSync(dir);
      const f = SCENARIOS.find((x) => x.name === name)!.build(dir);
      const base = new Uint8Array(readFileSync(f));
      const orig = qemuCheck(f);

      const rec = new RecordingIO(new MemoryIO(base));
      const out = await repairIO(rec, { mode: 'all', name });
      expect(out.applied).toBe(true);
      const ref = join(dir, 'one-shot.qcow2');
      writeFileSync(ref, (rec.inner as MemoryIO).snapshot());
      expect(qemuCheck(ref).status).toBe(0);
      expect(rec.flushCount).toBeGreaterThanOrEqual(1);

      const states = enumerateCrashStates(rec.log, { seed: 7, subsetsPerEpoch: 3, tornPerEpoch: 2 });
      expect(states.length).toBeGreaterThan(rec.log.length);
      const builder = new CrashStateBuilder(base, rec.log);
      const cf = join(dir, 'state.qcow2');
      for (const st of states) {
        const what = `${name}: ${describeCrashState(st)}`;
        const io = await builder.build(st);
        writeFileSync(cf, io.snapshot());
        const c = qemuCheck(cf);
        // Internal errors only where the original had them (QEMU prints one per unreadable refcount, so their
        // number follows the file length, which a rebuild may grow).
        if (num(orig.json, 'check-errors') === 0) expect(num(c.json, 'check-errors'), what).toBe(0);
        expect(num(c.json, 'corruptions'), what).toBeLessThanOrEqual(num(orig.json, 'corruptions'));
        // Second repair, from this state.
        await repairIO(io, { mode: 'all', name });
        writeFileSync(cf, io.snapshot());
        const c2 = qemuCheck(cf);
        expect(c2.status, `${what}: ${c2.stderr}`).toBe(0);
        expect(
          run('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'qcow2', cf, ref]).status,
          `${what}: guest data`,
        ).toBe(0);
      }
    });
  }
});
