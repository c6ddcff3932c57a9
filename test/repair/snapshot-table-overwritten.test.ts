// Regression test for one class the differential campaign found: a snapshot table overwritten by a
// refcount block. Entry 0 then claims ~192 KiB of extra data, which puts entry 1 past the end of the
// file. QEMU's plain check aborts; its `-r all` discards the extra data, reads entry 1 as zeros (an
// incomplete entry), rewrites the table and keeps every byte of the active disk. Ours refused the
// whole repair and left an image nothing could open: it lost the active disk qemu-img keeps.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';
import { readsBack } from '../helpers/guest-reads.js';

const t = tempDir('q2d-snapshot-table-overwritten-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);

const CS = 65536;
const DATA = 1280 * 1024;

describe('a snapshot table overwritten by a refcount block', () => {
  it('-r all rewrites the table as qemu-img does, the image opens again and the active disk reads back', () => {
    const f = join(t.dir, 'disk.qcow2');
    createQcow2(f, '16M', { cluster_size: CS });
    qemuIo(f, [`write -P 0x11 0 ${DATA}`]);
    qemuImg('snapshot', '-c', 's1', f);
    qemuImg('snapshot', '-c', 's2', f);
    const table = Number(readU64(f, 64));
    const reftable = Number(readU64(f, 48));
    const block = Number(readU64(f, reftable));
    const bytes = readFileSync(f);
    expect(table + CS).toBeGreaterThanOrEqual(bytes.length); // the table is the file's last cluster
    const damaged = Buffer.concat([bytes.subarray(0, table), bytes.subarray(block, block + CS)]);
    // Clusters 18 and 19 are shared with both snapshots (refcount 3): entry 0's extra data size.
    expect(damaged.readUInt32BE(table + 36)).toBe(0x00030003);
    writeFileSync(f, damaged);
    expect(qemuCheck(f).status).toBe(1); // "Too much extra metadata in snapshot table entry 0"

    const q = join(t.dir, 'qemu.qcow2');
    writeFileSync(q, damaged);
    run('qemu-img', ['check', '-r', 'all', q]);
    expect(readsBack(q, 0x11, 0, DATA)).toBe(true);

    const r = cli('check', '-r', 'all', '--no-journal', f);
    expect(r.status, r.stderr).toBe(qemuCheck(q).status); // no less clean than qemu-img's repair
    expect(r.stderr).toContain('Discarding too much extra metadata in snapshot table entry 0 (196611 > 1024)');
    expect(r.stderr).toContain('Repairing snapshot table entry 1 is incomplete');
    expect(r.stderr).toMatch(/not repaired: snapshot .*L1 table offset not cluster aligned/);
    expect(r.stderr.includes('\u0000')).toBe(false); // the damaged entry's ID bytes are shown escaped
    expect(qemuCheck(f).status).not.toBe(1); // it opens again
    expect(readsBack(f, 0x11, 0, DATA)).toBe(true);
  });
});
