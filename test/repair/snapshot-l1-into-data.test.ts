// Regression test for a class the differential campaign found (seed 20261209, case 515): a snapshot's
// L1 table overwritten by the active L2 table, so the snapshot's L1 entries name the disk's own data
// clusters (written after the snapshot: refcount 1, COPIED) as L2 tables. `-r all` used to treat each
// data cluster as "guest data sharing a cluster with an L2 table", move the disk's data aside and name
// it lost, where `qemu-img check -r all` kept it readable (on that image; on this one QEMU's own repair
// overwrites it). The active L2 entry is right (its table
// validates, the data is no L2 table): the snapshot's entry is the wrong claimant and is cleared.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readU64, tempDir } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-snap-l1-into-data-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 4096;
const SLOT = 2 << 20; // one L2 table maps 2 MiB at 4 KiB clusters
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

/**
 * 8 MiB, 4 KiB clusters: data at 0 and 2M, snapshot "before", then 8 KiB written at 2M+4k (the slot's
 * L2 table is copied on write, the new data clusters are the disk's own). Then the snapshot's L1
 * cluster is overwritten by that new active L2 table: snapshot L1 entries 1 and 2 name the two new
 * data clusters as L2 tables (entry 0 names the shared cluster at 2M).
 */
function snapshotL1OverwrittenByL2(name: string): { f: string; dataClusters: number[] } {
  const f = fileIn(name);
  createQcow2(f, '8M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 4k', `write -P 0x22 ${SLOT} 4k`]);
  qemuImg('snapshot', '-c', 'before', f);
  qemuIo(f, [`write -P 0x33 ${SLOT + CS} 8k`]);
  const l2 = tableOf(readU64(f, Number(readU64(f, 40)) + 8));
  const snapL1 = Number(readU64(f, Number(readU64(f, 64))));
  const dataClusters = [0, 1, 2].map((i) => tableOf(readU64(f, l2 + 8 * i)) / CS);
  const bytes = readFileSync(f);
  bytes.copy(bytes, snapL1, l2, l2 + CS);
  writeFileSync(f, bytes);
  return { f, dataClusters };
}

describe("a snapshot's L1 entry that names the disk's data as its L2 table is the wrong claimant", () => {
  it('-r all clears the snapshot entries and keeps every guest byte of the disk in place', () => {
    const { f, dataClusters } = snapshotL1OverwrittenByL2('snap-l1-into-data');
    const before = readFileSync(f);
    expect(qemuCheck(f).status).toBe(2);

    const r = repairAll(f);
    expect(r.stderr).toMatch(
      /the snapshot L1 entry at 0x[0-9a-f]+ \(index 1\) pointed at 0x[0-9a-f]+ as its L2 table, but that cluster is the disk's guest data/,
    );
    expect(r.stderr).toMatch(/snapshot L1 entry at 0x[0-9a-f]+ \(index 2\) pointed at/);
    expect(r.stderr).not.toMatch(/copied to cluster/);
    // Nothing of the disk is lost: its data never moved.
    expect(r.out['guest-ranges-lost'] ?? []).toEqual([]);
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(readsBack(f, 0x22, SLOT, CS)).toBe(true);
    expect(readsBack(f, 0x33, SLOT + CS, 2 * CS)).toBe(true);
    const after = readFileSync(f);
    for (const c of dataClusters)
      expect(Buffer.compare(after.subarray(c * CS, (c + 1) * CS), before.subarray(c * CS, (c + 1) * CS))).toBe(0);
    // No cluster is claimed twice any more (what is left is the lost snapshot tables' refusal, or leaks).
    const after2 = qemuCheck(f);
    expect(after2.json?.corruptions ?? 0).toBe(0);
    expect(after2.status === 0 || /not repaired: /.test(r.stderr)).toBe(true);
  });
});
