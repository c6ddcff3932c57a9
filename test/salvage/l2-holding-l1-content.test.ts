// Regression test for a class the differential campaign found (seed 20261210, case 38): an active L2
// table overwritten by a snapshot's L1 table. Read as an L2 table, its entries point at L2 tables
// (named lost one by one) and every other entry looks unallocated, so a cluster the disk wrote after
// the snapshot silently read as zeros with no range named. Such a table is an L1's content: its empty
// entries are lost, except those another disk proves by the refcounts (shared-entries.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-l1-in-l2-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const CS = 4096;
const SLOT2 = 4 << 20; // L1 slot 2 at 4 KiB clusters
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

interface Lost {
  start: number;
  end: number;
  reason: string;
}

describe("salvage of a disk whose L2 table was overwritten by a snapshot's L1 table", () => {
  // Slots 0, 1 and 2 hold data before the snapshot; after it the disk writes once more in slot 2
  // (its L2 table is copied on write), and that new table is overwritten by the snapshot's L1.
  const f = join(t.dir, 'disk.qcow2');
  createQcow2(f, '8M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 4k', 'write -P 0x22 2M 4k', `write -P 0x33 ${SLOT2 + 16 * CS} 4k`]);
  qemuImg('snapshot', '-c', 'before', f);
  qemuIo(f, [`write -P 0x55 ${SLOT2 + 32 * CS} 4k`]);
  const l2 = tableOf(readU64(f, Number(readU64(f, 40)) + 16));
  const snapL1 = Number(readU64(f, Number(readU64(f, 64))));
  const bytes = readFileSync(f);
  bytes.copy(bytes, l2, snapL1, snapL1 + CS);
  writeFileSync(f, bytes);

  it("names the table's empty entries lost, and still reads back what the snapshot proves", () => {
    const out = join(t.dir, 'out.raw');
    const rep = join(t.dir, 'out.json');
    const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    const lost = (JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Lost[] }> }).views[0]!.lost;
    const named = (g: number): Lost | undefined => lost.find((l) => l.start <= g && g + CS <= l.end);
    // The cluster written after the snapshot: its table is gone, and nothing else knows it.
    expect(named(SLOT2 + 32 * CS)?.reason).toMatch(/holds an L1 table's content/);
    expect(named(SLOT2 + 100 * CS)?.reason).toMatch(/holds an L1 table's content/);
    // The cluster the snapshot shares: its refcount proves the lost entry held it.
    expect(named(SLOT2 + 16 * CS)).toBeUndefined();
    const raw = readFileSync(out);
    expect(raw.subarray(SLOT2 + 16 * CS, SLOT2 + 17 * CS).every((x) => x === 0x33)).toBe(true);
    expect(raw.subarray(0, CS).every((x) => x === 0x11)).toBe(true);
    // Only that table is read so: the other slots' tables map their data as before.
    expect(lost.filter((l) => /holds an L1 table's content/.test(l.reason)).every((l) => l.start >= SLOT2)).toBe(true);
    expect(raw.subarray(2 << 20, (2 << 20) + CS).every((x) => x === 0x22)).toBe(true);
  });
});
