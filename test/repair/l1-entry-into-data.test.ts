// Regression tests for one class the differential campaign found: an L1 table cluster overwritten by
// an L2 table's content, so L1 entries name guest data clusters as their L2 tables while the data's
// own valid L2 table still maps them. `-r all` used to walk the data as a table, "fix" its entries by
// writing into the guest data, then copy the damaged bytes: it lost data `qemu-img check -r all`
// keeps. The L1 entry is the wrong claimant: it is cleared, its range named, the data kept in place.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuCheck, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';
import { readsBack, caseFiles } from '../helpers/guest-reads.js';

const t = tempDir('q2d-l1-into-data-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
const fileIn = caseFiles(t.dir);

const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

/** 512-byte clusters: 64 entries per L2 table (32 KiB of guest), the L1 table spans 4 clusters. */
const CS = 512;
const SPAN = 64 * CS;
const DATA_AT = 0x4e2400; // L1 slot 156, L2 entries 18 and 19

/**
 * An 8 MiB image with data at 0 and DATA_AT; then the L1 table's second cluster (entries 64..127,
 * none in use) is overwritten by the L2 table that maps DATA_AT: L1 entries 82 and 83 now name the
 * two data clusters as L2 tables.
 */
function l1OverwrittenByL2(name: string): { f: string; dataClusters: number[] } {
  const f = fileIn(name);
  createQcow2(f, '8M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 1k', `write -P 0x20 ${DATA_AT} 1k`]);
  const l1 = Number(readU64(f, 40));
  const l2 = tableOf(readU64(f, l1 + 8 * Math.floor(DATA_AT / SPAN)));
  const dataClusters = [18, 19].map((i) => tableOf(readU64(f, l2 + 8 * i)) / CS);
  const bytes = readFileSync(f);
  for (let i = 64; i < 128; i++) expect(bytes.readBigUInt64BE(l1 + 8 * i)).toBe(0n);
  bytes.copy(bytes, l1 + CS, l2, l2 + CS);
  writeFileSync(f, bytes);
  return { f, dataClusters };
}

describe('an L1 entry that names guest data as its L2 table is the wrong claimant', () => {
  it('-r all clears the L1 entries, names their range, keeps the data in place, and ends clean (exit 4)', () => {
    const { f, dataClusters } = l1OverwrittenByL2('l1-into-data');
    const before = readFileSync(f);
    expect(qemuCheck(f).status).toBe(2);
    const q = join(t.dir, 'l1-into-data-qemu.qcow2');
    writeFileSync(q, before);
    run('qemu-img', ['check', '-r', 'all', q]);
    expect(qemuCheck(q).status).toBe(2); // QEMU leaves the cluster shared, the errors in place
    expect(readsBack(q, 0x20, DATA_AT, 1024)).toBe(true);

    const r = cli('check', '-r', 'all', '--no-journal', '--output=json', f);
    expect(r.status, r.stderr).toBe(4); // the image is clean, but not its data
    expect(r.stderr).toMatch(
      /active L1 entry 82 pointed at 0x[0-9a-f]+ as its L2 table, but that cluster is guest data/,
    );
    expect(r.stderr).toMatch(/active L1 entry 83 pointed at/);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out['guest-ranges-lost']).toEqual([{ start: 82 * SPAN, length: 2 * SPAN }]);
    expect(qemuCheck(f).status).toBe(0);
    // Never less than qemu-img's repair keeps: the data reads back, from the same host clusters.
    expect(readsBack(f, 0x20, DATA_AT, 1024)).toBe(true);
    expect(readsBack(f, 0x11, 0, 1024)).toBe(true);
    const after = readFileSync(f);
    for (const c of dataClusters)
      expect(Buffer.compare(after.subarray(c * CS, (c + 1) * CS), before.subarray(c * CS, (c + 1) * CS))).toBe(0);
  });

  it('-r leaks changes no L1 entry and no data cluster', () => {
    const { f, dataClusters } = l1OverwrittenByL2('l1-into-data-leaks');
    const before = readFileSync(f);
    const r = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(r.status, r.stderr).toBe(2); // the corruption is left for -r all
    const after = readFileSync(f);
    const l1 = Number(readU64(f, 40));
    expect(Buffer.compare(after.subarray(l1, l1 + 4 * CS), before.subarray(l1, l1 + 4 * CS))).toBe(0);
    for (const c of dataClusters)
      expect(Buffer.compare(after.subarray(c * CS, (c + 1) * CS), before.subarray(c * CS, (c + 1) * CS))).toBe(0);
    expect(readsBack(f, 0x20, DATA_AT, 1024)).toBe(true);
  });
});
