// Two L1 entries (or an L1 entry and a snapshot's) naming one L2 table: which pointer is wrong is
// decided from the tables, never from the order the walk met them. Found by the campaign (seed
// 20261209, cases 63 and 161), each on a real qemu-img image damaged at precise bytes:
// - a snapshot's L1 entry redirected onto the active tree's L2 table: the active table carries COPIED
//   entries (written after the snapshot), so it is the active tree's own and the active entry stays —
//   before, -r all re-linked the active disk to the snapshot's old table and exited 0 (1.2 MiB wrong);
// - an active L1 entry redirected onto another slot's table: the table is copied for both slots, and
//   both spans are named lost (only one can be the table's own) — before, -r all exited 0 or 4
//   with the redirected span reading the other slot's data, unnamed.
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, patchU64, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-l1-slot-evidence-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);
const OFFSET = 0x00fffffffffffe00n;

describe('which of two pointers to one L2 table is damaged', () => {
  it("a snapshot's L1 entry redirected onto the active L2 table: the active disk keeps reading its own data", () => {
    const f = fileIn('snapshot-entry');
    createQcow2(f, '64M');
    qemuIo(f, ['write -P 0x11 0 1M']);
    run('qemu-img', ['snapshot', '-c', 'before', f]);
    qemuIo(f, ['write -P 0x22 0 256k']); // copy on write: the active tree gets its own L2 table
    const activeL1 = Number(readU64(f, 40));
    const activeTable = readU64(f, activeL1) & OFFSET;
    const snapshots = Number(readU64(f, 64));
    const snapL1 = Number(readU64(f, snapshots));
    const snapEntry = readU64(f, snapL1);
    expect(snapEntry & OFFSET).not.toBe(activeTable);
    patchU64(f, snapL1, (snapEntry & ~OFFSET) | activeTable);

    const r = repairAll(f);
    expect(r.stderr).not.toContain('re-link the lost L2 table');
    expect(readsBack(f, 0x22, 0, 256 * 1024)).toBe(true);
    expect(readsBack(f, 0x11, 256 * 1024, 768 * 1024)).toBe(true);
  });

  it("an active L1 entry redirected onto another slot's table: both spans are named lost, never exit 0", () => {
    const f = fileIn('active-entry');
    createQcow2(f, '8M', { cluster_size: '4k' }); // an L2 table maps 2 MiB
    qemuIo(f, ['write -P 0x33 4M 64k', 'write -P 0x44 6M 64k']);
    run('qemu-img', ['snapshot', '-c', 'before', f]); // the snapshot still holds slot 3's own table
    const l1 = Number(readU64(f, 40));
    const slot2 = readU64(f, l1 + 16);
    patchU64(f, l1 + 24, slot2); // L1[3] now names L1[2]'s table

    const r = repairAll(f);
    expect(r.status).toBe(4);
    const lost = r.out['guest-ranges-lost'] as Array<{ start: number; length: number }>;
    const covers = (a: number, b: number) => lost.some((x) => x.start <= a && x.start + x.length >= b);
    expect(covers(4 << 20, 6 << 20)).toBe(true);
    expect(covers(6 << 20, 8 << 20)).toBe(true);
    expect(readsBack(f, 0x33, 4 << 20, 64 * 1024)).toBe(true); // the slot that owns the table still reads it
  });
});
