// A refcount-table entry that points into the refcount table itself (a bit flip in a zero entry), or
// at the block another entry already uses, names no real refcount block. QEMU's check reports
// "refcount block N refcount=2" and its -r all rebuilds the refcount structure and ends clean; ours
// must end no less clean (no guest data is at stake), and the guest reads every byte it wrote.
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, patchU64, qemuCheck, qemuCheckHuman, qemuIo, readU64, tempDir } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-refblock-into-reftable-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 65536;

function image(name: string): { f: string; reftable: number } {
  const f = fileIn(name);
  createQcow2(f, '64M', { cluster_size: CS, refcount_bits: 16 });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 1M 128k', 'write -P 0x33 40M 64k']);
  return { f, reftable: Number(readU64(f, 48)) };
}

function expectRepairedWhole(f: string): void {
  const r = repairAll(f);
  expect(r.stderr).toMatch(/Rebuilding refcount structure/);
  expect(r.out['guest-ranges-lost']).toEqual([]);
  expect(r.status, r.stderr).toBe(0);
  expect(qemuCheck(f).status).toBe(0);
  expect(readsBack(f, 0x11, 0, CS)).toBe(true);
  expect(readsBack(f, 0x22, 1 << 20, 2 * CS)).toBe(true);
  expect(readsBack(f, 0x33, 40 << 20, CS)).toBe(true);
}

describe('a refcount-table entry pointing into the refcount structure', () => {
  it('entry 1172 flipped to the refcount table itself: -r all rebuilds like QEMU and ends clean (exit 0)', () => {
    const { f, reftable } = image('into-table');
    expect(readU64(f, reftable + 1172 * 8)).toBe(0n);
    patchU64(f, reftable + 1172 * 8, reftable);
    expect(qemuCheckHuman(f).stderr).toMatch(/ERROR refcount block 1172 refcount=2/);
    expectRepairedWhole(f);
  });

  it('entry 1 pointing at the block of entry 0: rebuilt, clean, nothing lost', () => {
    const { f, reftable } = image('shared-block');
    patchU64(f, reftable + 8, readU64(f, reftable));
    expect(qemuCheckHuman(f).stderr).toMatch(/ERROR refcount block 1 refcount=2/);
    expectRepairedWhole(f);
  });
});
