// Regression test for a class the differential campaign found (seed 20261209, case 812): the active L1
// table overwritten by the snapshot's L1. The slot then names the snapshot's older L2 table, while the
// disk's own table (QEMU's copy-on-write copy of it, live by its refcount) is referenced by no L1.
// Salvage read the older data there and said every recovered byte's position was certain, naming no
// range for the 1 MiB it counted lost. The copy shares data clusters with the slot's table entry for
// entry: the entries it changed are named possibly lost, guest cluster by guest cluster.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-stale-slot-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const CS = 65536;
const MIB = 1 << 20;

interface Lost {
  start: number;
  end: number;
  reason: string;
}

describe('salvage of a disk whose active L1 was overwritten by a snapshot L1', () => {
  // 16 MiB at 64 KiB clusters: one L1 slot. Written before the snapshot: 0 and 1M; after it: 1M again and 2M.
  const f = join(t.dir, 'disk.qcow2');
  createQcow2(f, '16M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 64k', `write -P 0x22 ${MIB} 64k`]);
  qemuImg('snapshot', '-c', 'before', f);
  qemuIo(f, [`write -P 0x33 ${MIB} 64k`, `write -P 0x44 ${2 * MIB} 64k`]);
  const l1 = Number(readU64(f, 40));
  const snapL1 = Number(readU64(f, Number(readU64(f, 64))));
  const bytes = readFileSync(f);
  bytes.copy(bytes, l1, snapL1, snapL1 + 8);
  writeFileSync(f, bytes);

  it('names the clusters the live copy-on-write copy changed, and never says every byte is certain and nothing lost', () => {
    const out = join(t.dir, 'out.raw');
    const rep = join(t.dir, 'out.json');
    const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
    // 2: lost ranges named; 6: and placed by guess (the shared cluster at 0 is now mapped more often than
    // its refcount allows, so which table is damaged cannot be told).
    expect([2, 6], r.stdout + r.stderr).toContain(r.status);
    const lost = (JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Lost[] }> }).views[0]!.lost;
    const named = (g: number): Lost | undefined => lost.find((l) => l.start <= g && g + CS <= l.end);
    for (const g of [MIB, 2 * MIB]) expect(named(g)?.reason).toMatch(/copy-on-write copy of this range's table/);
    // The older content is not passed off as the disk's: those clusters are written as zeros.
    const raw = readFileSync(out);
    for (const g of [MIB, 2 * MIB]) expect(raw.subarray(g, g + CS).every((x) => x === 0)).toBe(true);
    // Data the snapshot and the disk share is read back.
    expect(raw.subarray(0, CS).every((x) => x === 0x11)).toBe(true);
    expect(r.stdout).not.toMatch(/nothing lost/);
  });
});
