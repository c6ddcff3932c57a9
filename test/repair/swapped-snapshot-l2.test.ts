// An active L1 entry redirected onto a snapshot's own L2 table (or the active L1 overwritten with a
// snapshot's L1): the active disk reads the snapshot's old data. That table is referenced once more
// than its refcount allows, while the newer snapshot's table at the same slot counts one user more
// than its references — the active tree's share. `-r all` re-links the entry there and keeps every
// byte; with no such share, the active tree's own lost table that shares the snapshot table's data
// is re-linked; with neither, the span is named lost. QEMU's reader judges what the guest reads.
import { afterAll, describe, expect, it } from 'vitest';
import {
  createQcow2,
  patchU64,
  qemuCheck,
  qemuImg,
  qemuIo,
  readU64,
  run,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';
import { readsBack, caseFiles, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-swapped-snapshot-l2-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 65536;
const OFFSET = 0x00fffffffffffe00n;
const l1Entry = (f: string): number => Number(readU64(f, 40));

/** Snapshot s1 holds 0x11 at 0 in its table; the active disk wrote 0x22 there (a table of its own). */
function snapshotted(name: string, newer: boolean): { f: string; old: bigint } {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x33 1M 64k']);
  qemuImg('snapshot', '-c', 's1', f);
  const old = readU64(f, l1Entry(f)) & OFFSET;
  qemuIo(f, ['write -P 0x22 0 64k']);
  expect(readU64(f, l1Entry(f)) & OFFSET).not.toBe(old);
  if (newer) qemuImg('snapshot', '-c', 's2', f);
  return { f, old };
}

describe("an active L1 entry on a snapshot's L2 table", () => {
  it('a newer snapshot holds the active share: -r all re-links it and every byte reads back', () => {
    const { f, old } = snapshotted('newer', true);
    const e = readU64(f, l1Entry(f));
    patchU64(f, l1Entry(f), (e & ~OFFSET) | old);
    expect(readsBack(f, 0x11, 0, CS)).toBe(true); // the damage: the snapshot's old data
    const r = repairAll(f);
    expect(r.stderr).toMatch(/active L1 table entry 0 pointed at a snapshot's L2 table .* re-linked there/);
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
    expect(readsBack(f, 0x22, 0, CS)).toBe(true);
    expect(readsBack(f, 0x33, 1 << 20, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
    // The snapshot still reads its own data.
    const raw = `${f}.s1.raw`;
    expect(run('qemu-img', ['convert', '-U', '-l', 's1', '-O', 'raw', f, raw]).status).toBe(0);
    expect(readsBack(raw, 0x11, 0, CS, 'raw')).toBe(true);
    expect(readsBack(raw, 0x33, 1 << 20, CS, 'raw')).toBe(true);
  });

  it("no newer snapshot: the active tree's own table is lost, and the one that shares the snapshot table's data is re-linked", () => {
    const { f, old } = snapshotted('lost-own', false);
    const e = readU64(f, l1Entry(f));
    patchU64(f, l1Entry(f), (e & ~OFFSET) | old);
    const r = repairAll(f);
    expect(r.stderr).toMatch(
      /while the lost L2 table at 0x[0-9a-f]+ .* shares that table's data clusters at the same entries/,
    );
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
    expect(readsBack(f, 0x22, 0, CS)).toBe(true);
    expect(readsBack(f, 0x33, 1 << 20, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it("the active tree's own table is gone too: the span reads the snapshot's data and is named lost", () => {
    const { f, old } = snapshotted('none', false);
    const e = readU64(f, l1Entry(f));
    writeBytes(f, Number(e & OFFSET), new Uint8Array(CS)); // the active tree's own table, zeroed
    patchU64(f, l1Entry(f), (e & ~OFFSET) | old);
    const r = repairAll(f);
    expect(r.stderr).toMatch(/reads that snapshot's data, and no table holds the active tree.s own version/);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 0, length: 16 << 20 }]);
    expect(r.status, r.stderr).toBe(4); // the own table's data cluster is freed with no entry placing it
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});
