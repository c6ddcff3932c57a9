// An older snapshot's L1 table overwritten with the active L1 (campaign seed 20261213 case 11): three L1
// tables now point at the active tree's L2 table, which a newer snapshot shares (so none of its entries
// carries COPIED), and the older snapshot's own table is lost. That lost table shares data clusters with
// the active one, but it is the active tree's ancestor, not its copy-on-write: the entries it maps
// differently lack COPIED (the snapshot froze them). Re-linking the active entry to it would make the
// disk read the old snapshot's data; the active entry must stay, and the lost table is refused.
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readBytes, readU64, tempDir, writeBytes } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-snapshot-l1-copied-from-active-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 65536;

/** The L1 table offset and size of the first snapshot in the header's snapshot table. */
function firstSnapshotL1(f: string): { offset: number; size: number } {
  const table = Number(readU64(f, 64));
  return { offset: Number(readU64(f, table)), size: readBytes(f, table + 8, 4).readUInt32BE(0) };
}

describe("an older snapshot's L1 overwritten with the active L1", () => {
  it('-r all keeps the active entry on its own table and refuses the lost ancestor; nothing the disk reads changes', () => {
    const f = fileIn('ancestor');
    createQcow2(f, '16M', { cluster_size: CS });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x33 1M 64k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x22 0 64k', 'write -P 0x44 2M 64k']); // copy-on-write of the L2 table
    qemuImg('snapshot', '-c', 's2', f); // the new table is shared: its COPIED flags are cleared
    const l1 = Number(readU64(f, 40));
    const s1 = firstSnapshotL1(f);
    expect(s1.offset).not.toBe(l1);
    writeBytes(f, s1.offset, readBytes(f, l1, s1.size * 8)); // the damage
    expect(readsBack(f, 0x22, 0, CS)).toBe(true);
    expect(readsBack(f, 0x44, 2 << 20, CS)).toBe(true);

    const r = repairAll(f);
    expect(r.stderr).not.toMatch(/re-linked there/);
    expect(r.stderr).toMatch(/not repaired: 1 L2 table\(s\) still mapping guest data are linked from no L1 entry/);
    expect(r.status, r.stderr).not.toBe(0);
    // The active disk reads what it read before the repair, as after `qemu-img check -r all`.
    expect(readsBack(f, 0x22, 0, CS)).toBe(true);
    expect(readsBack(f, 0x33, 1 << 20, CS)).toBe(true);
    expect(readsBack(f, 0x44, 2 << 20, CS)).toBe(true);
    // Nothing freed: the lost table is still there for salvage, and no refcount is below its references.
    const after = qemuCheck(f);
    expect(after.json?.corruptions ?? 0).toBe(0);
    expect(after.json?.leaks).toBe(2); // the lost table and the data only it maps
  });
});
