// QEMU's check_oflag_copied, as the checker's second walk of the active layer does it: when the
// on-disk refcount of an L2 table's own cluster cannot be read (its refcount block's offset is not
// cluster aligned), QEMU skips the whole table, even entries whose own refcounts read fine.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, patchU64, qemuCheck, qemuCheckHuman, qemuIo, readU64, sha256, tempDir } from '../helpers/qemu.js';
import { countersFromQemuJson, ourCheck, ourProblemLines, qemuProblemLines } from './harness.js';

const tmp = tempDir('q2d-copied-');
afterAll(() => tmp.cleanup());

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const COPIED = 1n << 63n;

describe('check_oflag_copied', () => {
  it('skips an L2 table whose refcount cannot be read, with a wrong COPIED flag in it (as QEMU)', async () => {
    // 4 KiB clusters and 64-bit refcounts: a refcount block covers 512 clusters (2 MiB of file), so
    // 2 MiB of guest data spills into the second block while the L2 table stays in the first.
    const f = join(tmp.dir, 'copied-skipped.qcow2');
    createQcow2(f, '64M', { cluster_size: 4096, refcount_bits: 64 });
    qemuIo(f, ['write -P 0x33 0 2M']);
    const reftable = Number(readU64(f, 48));
    const l2 = Number(readU64(f, Number(readU64(f, 40))) & OFFSET_MASK);
    expect(Math.floor(l2 / 4096 / 512), 'premise: the L2 table is counted by refcount block 0').toBe(0);
    let index = -1;
    for (let e = 0; e < 512 && index < 0; e++) {
      const entry = readU64(f, l2 + 8 * e);
      if ((entry & COPIED) !== 0n && Number(entry & OFFSET_MASK) / 4096 >= 512) index = e;
    }
    expect(index, 'premise: an entry whose data cluster is counted by refcount block 1').toBeGreaterThan(0);
    const entry = readU64(f, l2 + 8 * index);
    // Refcount block 0 at an unaligned offset; the entry loses COPIED though its refcount is 1.
    patchU64(f, reftable, readU64(f, reftable) | 0x200n);
    patchU64(f, l2 + 8 * index, entry & ~COPIED);
    const before = sha256(f);

    const q = qemuCheck(f);
    const qh = qemuCheckHuman(f);
    const ours = await ourCheck(f);
    expect(sha256(f), 'checking must not write').toBe(before);
    expect(
      qemuProblemLines(qh.stderr).some((l) => l.includes('OFLAG_COPIED')),
      'premise: QEMU says nothing',
    ).toBe(false);
    expect(ourProblemLines(ours.lines)).toEqual(qemuProblemLines(qh.stderr));
    expect(ours.exit).toBe(q.status);
    const c = ours.result!.counters;
    expect(q.json).toBeDefined();
    expect({
      checkErrors: c.checkErrors,
      corruptions: c.corruptions,
      leaks: c.leaks,
      imageEndOffset: c.imageEndOffset,
      totalClusters: c.totalClusters,
      allocatedClusters: c.allocatedClusters,
      fragmentedClusters: c.fragmentedClusters,
      compressedClusters: c.compressedClusters,
    }).toEqual(countersFromQemuJson(q.json!));
    expect(ours.result!.anomalies.some((a) => a.kind === 'copied-l2')).toBe(false);
  });
});
