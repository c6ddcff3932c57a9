// A repair that does not leave the image clean says why, every time: the campaign found `check -r`
// exiting non-zero with no word of refusal while `qemu-img check` of the result still failed. Two
// classes: a file whose qcow2 header is zeroed (nothing can be repaired; say so, write nothing,
// point to salvage), and reserved bits flipped in an L2 entry that maps nothing (the repair did not
// see them, so it left QEMU's error in place; now it clears them, the mapping unchanged). Whatever a
// repair still leaves is named, entry by entry, with the way forward.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
import { caseFiles, readsBack } from '../helpers/guest-reads.js';

const t = tempDir('q2d-not-clean-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
const fileIn = caseFiles(t.dir);

const l1Offset = (f: string): number => Number(readU64(f, 40));
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);
const REFUSAL = /refus|not repaired: /i;

/** A 64 KiB-cluster image with data at 0 and 128 KiB, and the offset of its one L2 table. */
function imageWithData(name: string, opts: Record<string, string | number> = {}): { f: string; l2: number } {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: 65536, ...opts });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 128k 64k']);
  return { f, l2: tableOf(readU64(f, l1Offset(f))) };
}

describe('a zeroed qcow2 header: the repair refuses in words and writes nothing', () => {
  it('check -r all / -r leaks exit 63 as qemu-img does, print "not repaired" and the salvage command', () => {
    const { f } = imageWithData('zeroed-header');
    writeBytes(f, 0, new Uint8Array(512));
    const original = readFileSync(f);
    expect(run('qemu-img', ['check', '-r', 'all', f]).status).toBe(63);
    for (const mode of ['all', 'leaks']) {
      const r = cli('check', '-r', mode, '--output=json', f);
      expect(r.status, r.stderr).toBe(63);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines[0]).toBe('qcow2-doctor: This image format does not support checks');
      expect(lines[1]).toMatch(
        /^qcow2-doctor: not repaired: the header is not a qcow2 header \(magic 0x00000000, expected 0x514649fb\); nothing was written — .*tables are there.*: recover its data with: qcow2-doctor salvage \S+disk\.qcow2 recovered\.raw$/,
      );
    }
    // Byte-identical, and no journal, copy or log was created beside it.
    expect(readFileSync(f).equals(original)).toBe(true);
    const copy = join(dirname(f), 'copy.qcow2');
    expect(cli('check', '-r', 'all', '--output-image', copy, f).status).toBe(63);
    expect(existsSync(copy)).toBe(false);
    expect(readdirSync(dirname(f))).toEqual(['disk.qcow2']);
  });

  it('with -f qcow2 it fails to open as qemu-img does (exit 1) and still says it repaired nothing', () => {
    const { f } = imageWithData('zeroed-header-forced');
    writeBytes(f, 0, new Uint8Array(512));
    const original = readFileSync(f);
    expect(run('qemu-img', ['check', '-f', 'qcow2', '-r', 'all', f]).status).toBe(1);
    const r = cli('check', '-f', 'qcow2', '-r', 'all', f);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`Could not open '${f}': Image is not in qcow2 format`);
    expect(r.stderr).toMatch(/not repaired: the qcow2 header cannot be used \(.*\); nothing was written — .*salvage/);
    expect(readFileSync(f).equals(original)).toBe(true);
  });

  it('a header QEMU cannot open (version 7): exit 1 as qemu-img, the field named, a refusal, nothing written', () => {
    const { f } = imageWithData('header-version');
    writeBytes(f, 4, new Uint8Array([0, 0, 0, 7]));
    const original = readFileSync(f);
    expect(run('qemu-img', ['check', '-r', 'all', f]).status).toBe(1);
    const r = cli('check', '-r', 'all', f);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Unsupported qcow2 version 7 (header.version = 7)');
    expect(r.stderr).toMatch(/not repaired: the qcow2 header cannot be used \(.*\); nothing was written — .*salvage/);
    expect(readFileSync(f).equals(original)).toBe(true);
    expect(readdirSync(dirname(f))).toEqual(['disk.qcow2']);
  });

  it('a plain file that never was qcow2: 63, no claim that tables are there', () => {
    const f = join(fileIn('raw-file').replace(/disk\.qcow2$/, ''), 'disk.raw');
    qemuImg('create', '-f', 'raw', f, '1M');
    const r = cli('check', '-r', 'all', f);
    expect(r.status).toBe(63);
    expect(r.stderr).toMatch(/not repaired: the header is not a qcow2 header .*no qcow2 tables were recognised/);
  });
});

describe('reserved bits flipped in an L2 entry that maps nothing are cleared (QEMU leaves the error)', () => {
  it('active L2, bit 5 of an unallocated entry: -r all ends clean, data and holes read as before', () => {
    const { f, l2 } = imageWithData('reserved-unallocated');
    patchU64(f, l2 + 4 * 8, 0x20n); // entry 4 (guest 256 KiB): unallocated, a reserved bit set
    expect(qemuCheck(f).status).toBe(2);
    const q = join(dirname(f), 'qemu.qcow2');
    run('cp', [f, q]);
    expect(run('qemu-img', ['check', '-r', 'all', q]).status).toBe(2); // QEMU's repair leaves it
    const r = cli('check', '-r', 'all', '--no-journal', f);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/L2 table at 0x[0-9a-f]+, entry 4: reserved bits cleared \(20 → 0\)/);
    expect(qemuCheck(f).status).toBe(0);
    expect(readU64(f, l2 + 4 * 8)).toBe(0n);
    expect(readsBack(f, 0x11, 0, 65536) && readsBack(f, 0x22, 131072, 65536)).toBe(true);
    expect(readsBack(f, 0, 65536, 65536) && readsBack(f, 0, 262144, 65536)).toBe(true);
  });

  it('a high reserved bit (bit 58) on an unallocated entry, and -r leaks names what it leaves', () => {
    const { f, l2 } = imageWithData('reserved-high');
    patchU64(f, l2 + 191 * 8, 1n << 58n);
    const leaks = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(leaks.status).toBe(2);
    expect(leaks.stderr).toMatch(
      /not repaired: the re-check still finds 1 error\(s\) — -r leaks repairs leaked clusters/,
    );
    expect(leaks.stderr).toMatch(
      /left: ERROR found l2 entry with reserved bits set: 400000000000000 \(l2 at 0x[0-9a-f]+, entry 191, guest 0xbf0000\)/,
    );
    expect(leaks.stderr).toContain('way forward: `qcow2-doctor check -r all --dry-run');
    const all = cli('check', '-r', 'all', '--no-journal', f);
    expect(all.status, all.stderr).toBe(0);
    expect(all.stderr).not.toMatch(REFUSAL);
    expect(qemuCheck(f).status).toBe(0);
    expect(readsBack(f, 0x11, 0, 65536) && readsBack(f, 0x22, 131072, 65536)).toBe(true);
  });

  it("a snapshot's own L2 table, three flips on unallocated entries: all cleared, the snapshot reads as before", () => {
    const { f, l2 } = imageWithData('reserved-snapshot', { cluster_size: 4096 });
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x33 0 4k']); // copy on write: the old L2 table is the snapshot's alone
    expect(tableOf(readU64(f, l1Offset(f)))).not.toBe(l2);
    for (const [i, v] of [
      [150, 0x4n],
      [294, 0x8n],
      [350, 1n << 61n],
    ] as const)
      patchU64(f, l2 + i * 8, v);
    expect(qemuCheck(f).status).toBe(2);
    const r = cli('check', '-r', 'all', '--no-journal', f);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.match(/snapshot 1's L2 table at 0x[0-9a-f]+, entry \d+: reserved bits cleared/g)).toHaveLength(3);
    expect(qemuCheck(f).status).toBe(0);
    expect(readsBack(f, 0x33, 0, 4096)).toBe(true);
    const snap = join(dirname(f), 'snap.raw');
    qemuImg('convert', '-l', 'snapshot.name=s1', '-O', 'raw', f, snap);
    expect(readsBack(snap, 0x11, 0, 65536, 'raw') && readsBack(snap, 0x22, 131072, 65536, 'raw')).toBe(true);
  });
});

describe('what a repair leaves is named, entry by entry, with the way forward', () => {
  it('-r leaks on a refcount table that needs a rebuild: exit 1 as qemu-img, nothing written, -r all named', () => {
    const { f } = imageWithData('leaks-needs-rebuild');
    const reftable = Number(readU64(f, 48));
    patchU64(f, reftable, readU64(f, reftable) | 1n); // a reserved bit in refcount-table entry 0
    const original = readFileSync(f);
    const q = join(dirname(f), 'qemu.qcow2');
    run('cp', [f, q]);
    expect(run('qemu-img', ['check', '-r', 'leaks', q]).status).toBe(1);
    const r = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERROR need to rebuild refcount structures');
    expect(r.stderr).toMatch(
      /not repaired: need to rebuild refcount structures; nothing was written — `qcow2-doctor check -r all \S+` rebuilds/,
    );
    expect(readFileSync(f).equals(original)).toBe(true);
  });

  it('--cautious keeps a pointer past the end of the file: exit 2, a refusal and a "left:" line per error', () => {
    const { f, l2 } = imageWithData('cautious-residue');
    patchU64(f, l2 + 3 * 8, 0x8000000040000000n); // entry 3 → 1 GiB, far past the end of the file
    const r = cli('check', '-r', 'all', '--cautious', '--no-journal', f);
    expect(r.status).toBe(2);
    expect(qemuCheck(f).status).toBe(2);
    expect(r.stderr).toMatch(/not repaired: L2 table at 0x[0-9a-f]+, entry 3 points past the end of the file/);
    // QEMU counts two errors for the entry (past the end, and COPIED with refcount 0): both are named.
    expect(r.stderr).toMatch(/not repaired: the re-check still finds 2 error\(s\)/);
    expect(r.stderr).toMatch(/left: ERROR: counting reference .*\(l2 at 0x[0-9a-f]+, entry 3, guest 0x30000\)/);
    expect(r.stderr).toMatch(/left: ERROR OFLAG_COPIED data cluster: .*\(l2 at 0x[0-9a-f]+, entry 3, guest 0x30000;/);
    expect(r.stderr).toMatch(/way forward: copy the data out with `qcow2-doctor salvage \S+ recovered\.raw`/);
    // The other data is untouched.
    expect(readsBack(f, 0x11, 0, 65536) && readsBack(f, 0x22, 131072, 65536)).toBe(true);
  });
});
