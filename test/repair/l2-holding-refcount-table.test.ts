// Regression test for a class the differential campaign found (seed 20261210, case 177): at 512-byte
// clusters, an active L2 table overwritten by the refcount table. A small image's refcount table holds
// one pointer, so the "table" maps a single entry onto the refcount block: -r all copied that entry's
// cluster aside and named 512 bytes lost, while the data the real table mapped elsewhere in its span
// was freed as if that entry accounted for it — exit 4 with bytes lost outside the named ranges. The
// cluster holds exactly the refcount table's bytes: the whole span is named lost.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { createQcow2, qemuCheck, qemuIo, readU64, tempDir } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-l2-refcount-table-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 512;
const SPAN = 64 * CS; // one L2 table maps 32 KiB at 512-byte clusters
const SLOT = 152; // guest 0x4c0000
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

describe('an active L2 table overwritten by the refcount table', () => {
  it('-r all names the whole span lost, where the table mapped data at entry 43', () => {
    const f = fileIn('l2-refcount-table');
    createQcow2(f, '8M', { cluster_size: CS });
    qemuIo(f, ['write -P 0x11 0 512', `write -P 0x4a ${SLOT * SPAN + 43 * CS} 512`]);
    const l2 = tableOf(readU64(f, Number(readU64(f, 40)) + 8 * SLOT));
    const reftable = Number(readU64(f, 48));
    const bytes = readFileSync(f);
    // The refcount table's one pointer: entry 0 of the copied "L2 table" names the refcount block.
    expect(bytes.readBigUInt64BE(reftable + 8)).toBe(0n);
    bytes.copy(bytes, l2, reftable, reftable + CS);
    writeFileSync(f, bytes);
    expect(qemuCheck(f).status).toBe(2);

    const r = repairAll(f);
    expect(r.stderr).toMatch(/the L2 table at 0x[0-9a-f]+ holds a copy of the refcount table at 0x[0-9a-f]+/);
    expect(r.status, r.stderr).toBe(4); // the image is clean, its data is not whole
    expect(r.out['guest-ranges-lost']).toEqual([{ start: SLOT * SPAN, length: SPAN }]);
    expect(qemuCheck(f).status).toBe(0);
    // The rest of the disk is untouched.
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
  });
});
