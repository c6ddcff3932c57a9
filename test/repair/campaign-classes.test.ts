// Regression tests for the false claims the differential campaign found (campaign/), one per class,
// each on a real qemu-img image damaged at precise bytes: leaked clusters that still hold data
// (orphaned by a zeroed or redirected L2 entry), lost tables of extended-L2 images, and images
// with snapshots whose active L1 was zeroed. QEMU's reader judges what the guest reads.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  createQcow2,
  patchU64,
  qemuCheck,
  qemuCheckHuman,
  qemuImg,
  qemuIo,
  readBytes,
  readU64,
  run,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';
import { readsBack, caseFiles } from '../helpers/guest-reads.js';

const t = tempDir('q2d-campaign-classes-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
const fileIn = caseFiles(t.dir);

const l1Offset = (f: string): number => Number(readU64(f, 40));
const l1Size = (f: string): number => Number(readU64(f, 32) & 0xffffffffn);
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

function json(args: string[]): { status: number; stderr: string; out: Record<string, unknown> } {
  const r = cli(...args);
  return { status: r.status, stderr: r.stderr, out: JSON.parse(r.stdout) as Record<string, unknown> };
}

const kinds = (out: Record<string, unknown>): string[] =>
  ((out.anomalies as Array<{ kind: string }>) ?? []).map((a) => a.kind);

describe('leaked clusters that still hold data are orphaned data, not harmless leaks', () => {
  it('zeroed L2 entry: check reports orphaned data, -r leaks keeps the cluster (exit 3), -r all names what it frees', () => {
    const f = fileIn('l2-entry-zeroed');
    createQcow2(f, '16M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    const entry = readU64(f, l2 + 8);
    patchU64(f, l2 + 8, 0); // guest 64 KiB..128 KiB loses its pointer; its cluster is leaked
    const check = json(['check', '--output=json', f]);
    expect(check.status).toBe(3); // QEMU's exit status: leaks
    expect(kinds(check.out)).toContain('orphaned-data');
    const human = cli('check', f);
    expect(human.stdout).toMatch(/1 leaked cluster still holds data no table maps any more/);
    const leaks = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(leaks.status, leaks.stderr).toBe(3);
    expect(leaks.stderr).toMatch(/refused to free 1 leaked cluster\(s\) that still hold data/);
    // Nothing was freed: with the entry put back the data reads and the image is clean.
    patchU64(f, l2 + 8, entry);
    expect(readsBack(f, 0x22, 65536, 65536)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
    patchU64(f, l2 + 8, 0);
    const all = cli('check', '-r', 'all', '--output=json', f);
    expect(all.stderr).toMatch(/freed 1 leaked cluster\(s\) that still held data .* as QEMU does/);
    expect(all.stderr).toMatch(/qcow2-doctor undo/);
    // Nothing says where the data belonged: not the exit 0 that claims nothing was lost.
    expect(all.status, all.stderr).toBe(4);
    const out = JSON.parse(all.stdout) as Record<string, unknown>;
    expect(out['guest-ranges-lost']).toEqual([]);
    expect(out['guest-data-lost-unplaced']).toEqual({ clusters: 1, bytes: 65536 });
    expect(all.stderr).toMatch(/guest data lost at positions nobody can tell: 1 freed cluster/);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('L2 entry redirected onto the header (offset 0, COPIED kept): -r all names its guest range and exits 4', () => {
    const f = fileIn('l2-entry-onto-header');
    createQcow2(f, '16M', { cluster_size: 65536, refcount_bits: 8 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k', 'write -P 0x33 15M 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    const entry = readU64(f, l2 + 8);
    expect(entry >> 63n).toBe(1n);
    patchU64(f, l2 + 8, entry & ~0x00fffffffffffe00n); // QEMU now reads guest 64 KiB..128 KiB as unallocated
    expect(qemuCheck(f).status).toBe(3); // only the data cluster shows, as a leak
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4); // the image is clean, but not its data
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 65536, length: 65536 }]);
    expect(r.out['guest-data-lost-unplaced']).toBeUndefined();
    expect(r.stderr).toMatch(/1 active L2 entry has lost the host offset .* kept the COPIED flag/);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0, 65536, 65536)).toBe(true);
    expect(readsBack(f, 0x33, 15 << 20, 65536)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});

describe('data a re-link brings back is neither freed nor called lost', () => {
  it('L1 entry made unaligned: the L2 table is re-linked, its data stays, -r all exits 0 naming nothing', () => {
    const f = fileIn('l1-entry-unaligned-relinked');
    createQcow2(f, '16M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    patchU64(f, l1Offset(f), BigInt(l2 + 0x2a00) | (1n << 63n));
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/re-linked to the orphaned L2 table/);
    expect(r.stderr).not.toMatch(/freed \d+ leaked cluster/);
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(r.out['guest-data-lost-unplaced']).toBeUndefined();
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0x22, 65536, 65536)).toBe(true);
  });
});

describe('a destroyed L2 table: -r all frees its data as QEMU does and says the data is lost at unknown places', () => {
  it('L2 table of an extended-L2 image overwritten by the L1 table: exit 4, freed data counted, its span named', () => {
    const f = fileIn('xl2-l2-overwritten-by-l1');
    createQcow2(f, '64M', { cluster_size: 65536, extended_l2: true });
    qemuIo(f, ['write -P 0x11 0 128k', 'write -P 0x22 1M 64k', 'write -P 0x33 5M 192k']);
    const l1 = l1Offset(f);
    const l2 = tableOf(readU64(f, l1));
    writeBytes(f, l2, readBytes(f, l1, 65536)); // the L2 table now holds the L1's bytes
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4);
    // The table holds exactly the L1's bytes: what it mapped cannot be told, so its whole span is named lost.
    expect(r.stderr).toMatch(/the L2 table at 0x[0-9a-f]+ holds a copy of the active L1 table at/);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 0, length: 64 << 20 }]);
    // The six data clusters no entry maps any more are freed, and said to be lost at unknown places.
    expect(r.out['guest-data-lost-unplaced']).toEqual({ clusters: 6, bytes: 6 * 65536 });
    expect(r.stderr).toMatch(/6 freed cluster\(s\) held data whose place in the guest disk cannot be told/);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('L2 entry pointed at another data cluster (a damaged offset): -r all copies, frees the lost cluster, exits 4', () => {
    const f = fileIn('l2-entry-onto-data');
    createQcow2(f, '16M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    const first = readU64(f, l2);
    expect(readU64(f, l2 + 8)).not.toBe(first);
    patchU64(f, l2 + 8, first); // guest 64 KiB now reads guest 0's data; its own cluster is leaked
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4);
    expect(r.out['guest-data-lost-unplaced']).toEqual({ clusters: 1, bytes: 65536 });
    expect(r.stderr).toMatch(/cross-linked/);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('zeroed L2 table: -r leaks keeps its data (exit 3), -r all frees it and exits 4', () => {
    const f = fileIn('l2-zeroed');
    createQcow2(f, '16M', { cluster_size: 65536, refcount_bits: 1 });
    qemuIo(f, ['write -P 0x11 0 128k', 'write -P 0x22 3M 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    writeBytes(f, l2, new Uint8Array(65536));
    const leaks = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(leaks.status, leaks.stderr).toBe(3);
    expect(leaks.stderr).toMatch(/refused to free 3 leaked cluster\(s\)/);
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4);
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(r.out['guest-data-lost-unplaced']).toEqual({ clusters: 3, bytes: 3 * 65536 });
    expect(qemuCheck(f).status).toBe(0);
  });

  it('L2 entry redirected onto the L1 table: -r all names the guest range that now reads the table', () => {
    const f = fileIn('l2-entry-onto-l1');
    createQcow2(f, '16M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = tableOf(readU64(f, l1Offset(f)));
    patchU64(f, l2 + 8, BigInt(l1Offset(f)) | (1n << 63n));
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 65536, length: 65536 }]);
    expect(r.stderr).toMatch(/lost: guest 0x10000–0x1ffff \(64 KiB\)/);
    expect(r.stderr).toMatch(/freed 1 leaked cluster\(s\) that still held data/);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
  });

  it('snapshot-shared cluster whose active L2 entry is zeroed: check says so, -r all names the guest range', () => {
    const f = fileIn('shared-entry-zeroed');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x33 16k 4k']); // the active L2 table is copied: it is the active's own now
    const l2 = tableOf(readU64(f, l1Offset(f)));
    patchU64(f, l2 + 8, 0); // guest 4 KiB..8 KiB: still in the snapshot, lost to the active disk
    const check = json(['check', '--output=json', f]);
    expect(check.status).toBe(3);
    const orphaned = (check.out.anomalies as Array<{ kind: string; referrers?: { guestOffset?: number }[] }>).find(
      (a) => a.kind === 'orphaned-data',
    );
    expect(orphaned?.referrers?.[0]?.guestOffset).toBe(4096);
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4); // the image is clean, but not its data
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 4096, length: 4096 }]);
    expect(r.stderr).toMatch(/lost their mapping while a snapshot still holds the data/);
    expect(readsBack(f, 0x11, 0, 4096)).toBe(true);
  });
});

describe('compressed clusters shared with a snapshot', () => {
  it('zeroed active L2 entries of compressed clusters: orphaned data, -r leaks and -r all name the ranges', () => {
    const f = fileIn('compressed-share-zeroed');
    createQcow2(f, '1M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 16k', 'write -c -P 0x22 16k 4k', 'write -c -P 0x33 20k 4k', 'write -c -P 0x44 24k 4k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x55 64k 4k']); // the active L2 table is copied: it is the active's own now
    const l2 = tableOf(readU64(f, l1Offset(f)));
    for (const i of [4, 5, 6]) expect(readU64(f, l2 + 8 * i) >> 62n).toBe(1n); // compressed descriptors
    writeBytes(f, l2 + 32, Buffer.alloc(24)); // guest 16 KiB..28 KiB: three streams sharing one host cluster
    expect(qemuCheckHuman(f).stderr).toMatch(/Leaked cluster \d+ refcount=6 reference=3/);
    const check = json(['check', '--output=json', f]);
    expect(check.status).toBe(3);
    const orphaned = (check.out.anomalies as Array<{ kind: string; referrers?: { guestOffset?: number }[] }>).find(
      (a) => a.kind === 'orphaned-data',
    );
    expect(orphaned?.referrers?.[0]?.guestOffset).toBe(16384);
    expect(cli('check', f).stdout).toMatch(/1 leaked cluster still holds data no table maps any more/);
    const copy = join(t.dir, 'compressed-share-copy.qcow2');
    run('cp', [f, copy]);
    const leaks = json(['check', '-r', 'leaks', '--no-journal', '--output=json', copy]);
    expect(leaks.out['guest-ranges-lost']).toEqual([{ start: 16384, length: 12288 }]);
    expect(leaks.status, leaks.stderr).toBe(4); // a named lost range never exits 0
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(4);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 16384, length: 12288 }]);
    expect(r.stderr).toMatch(/lost their mapping while a snapshot still holds the data/);
    expect(readsBack(f, 0x11, 0, 16384)).toBe(true);
    expect(readsBack(f, 0x00, 16384, 12288)).toBe(true); // the named range reads zeros, as said
    expect(readsBack(f, 0x55, 65536, 4096)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});

describe('extended L2: lost tables are found and re-linked', () => {
  it('zeroed active L1 entry of an extended-L2 image: check finds the lost table, -r all re-links it', () => {
    const f = fileIn('xl2-l1-zeroed');
    createQcow2(f, '64M', { cluster_size: 65536, extended_l2: true });
    qemuIo(f, ['write -P 0x11 0 128k', 'write -P 0x22 1M 64k']);
    patchU64(f, l1Offset(f), 0);
    const check = json(['check', '--output=json', f]);
    expect(kinds(check.out)).toContain('lost-table');
    const r = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/re-linked there because it is the only lost table/);
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(readsBack(f, 0x11, 0, 128 * 1024)).toBe(true);
    expect(readsBack(f, 0x22, 1 << 20, 65536)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});

describe('snapshots: a zeroed active L1 is rebuilt from the snapshot L1', () => {
  it('check reports lost tables placed by the snapshot L1; -r leaks keeps them', () => {
    const f = fileIn('snapshot-l1-zeroed');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -P 0x22 3M 8k']);
    qemuImg('snapshot', '-c', 's1', f);
    writeBytes(f, l1Offset(f), new Uint8Array(l1Size(f) * 8));
    const check = json(['check', '--output=json', f]);
    const lost = (check.out.anomalies as Array<{ kind: string; lostTable?: { placedBy?: string; l1Index?: number } }>)
      .filter((a) => a.kind === 'lost-table')
      .map((a) => [a.lostTable?.l1Index, a.lostTable?.placedBy]);
    expect(lost).toEqual([
      [0, 'snapshot-l1'],
      [1, 'snapshot-l1'],
    ]);
    const r = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/kept 2 lost L2 table\(s\)/);
    const all = cli('check', '-r', 'all', '--no-journal', f);
    expect(all.status, all.stderr).toBe(0);
    expect(readsBack(f, 0x11, 0, 8192)).toBe(true);
    expect(readsBack(f, 0x22, 3 << 20, 8192)).toBe(true);
  });
});
