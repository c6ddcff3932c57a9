// Salvage says exactly what it knows: a placement read from surviving metadata or pinned by a
// structure in the guest data is certain; any other is a guess, with its own exit status (4) and
// words, never "nothing lost". Each evidence kind is tested on an image whose guest content the
// test creates (mkfs.ext4 on a raw file, or the structure's bytes written at the right offsets).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { salvageImage } from '../../engine/salvage/salvage.js';
import type { SalvageReport, ViewReport } from '../../engine/salvage/types.js';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-certainty-');
afterAll(t.cleanup);
const p = (n: string): string => join(t.dir, n);
const MIB = 1024 * 1024;
const cli = (...args: string[]) => run('node', ['bin/qcow2-doctor.cjs', 'salvage', ...args]);

/** The raw guest disk qemu-img reads from an undamaged image. */
function truth(img: string, name: string): Buffer {
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, p(name));
  return readFileSync(p(name));
}

/** Zero the active L1 table in place (the header still names it). */
function zeroL1(img: string): void {
  const l1 = Number(readU64(img, 40));
  const entries = readFileSync(img).readUInt32BE(36);
  writeBytes(img, l1, new Uint8Array(entries * 8));
}

/** Every range the report calls certain reads back exactly as the guest wrote it. */
function certainRangesMatch(v: ViewReport, got: Buffer, want: Buffer): number {
  let checked = 0;
  for (const r of v.placement) {
    if (r.how === 'by-guess') continue;
    expect(got.subarray(r.start, r.end).equals(want.subarray(r.start, r.end)), `${r.how} ${r.start}..${r.end}`).toBe(
      true,
    );
    checked += r.end - r.start;
  }
  return checked;
}

/** A raw disk converted to a 4 KiB-cluster qcow2 whose L1 table is then zeroed. */
function qcow2WithZeroedL1(raw: string, name: string): string {
  const f = p(name);
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, f);
  zeroL1(f);
  return f;
}

const guessedSlots = (r: SalvageReport): number[] =>
  r.views[0]!.l2Tables.filter((x) => x.confidence < 1).map((x) => x.l1Index);
const evidenceSlots = (r: SalvageReport): number[] =>
  r.views[0]!.l2Tables.filter((x) => x.source === 'evidence')
    .map((x) => x.l1Index)
    .sort((a, b) => a - b);

describe('the certainty of a salvage', () => {
  it('zeroed L1 with data at 0, 37 and 200 MiB: no guessed placement is called nothing lost', () => {
    const f = p('z.qcow2');
    createQcow2(f, '256M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 3M', 'write -P 0x22 37M 5M', 'write -P 0x33 200M 64k']);
    const want = truth(f, 'z.ref');
    zeroL1(f);
    const r = cli(f, p('z.out'), '--report', p('z.json'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(4);
    expect(r.stdout).not.toMatch(/nothing lost/);
    expect(r.stdout).toMatch(/Outcome: recovered; 8\.06 MiB placed by guess, confidence 0\.4/);
    expect(r.stdout).toMatch(/guest 0x0\.\.0xc00000: BY GUESS \(confidence 0\.4\)/);
    const j = JSON.parse(readFileSync(p('z.json'), 'utf8')) as SalvageReport;
    expect(j.outcome).toMatchObject({ exitCode: 4, lost: 0, guessConfidence: 0.4 });
    expect(j.outcome!.guessed).toBe(j.views[0]!.bytes.recovered);
    expect(j.outcome!.words).not.toMatch(/nothing lost/);
    expect(j.views[0]!.placement.every((x) => x.how === 'by-guess')).toBe(true);
    // It really is a guess: the data written at 37 MiB is not there in the output.
    const got = readFileSync(p('z.out'));
    expect(got.subarray(37 * MIB, 37 * MIB + 4096).equals(want.subarray(37 * MIB, 37 * MIB + 4096))).toBe(false);
  });

  it('exit 0 and "nothing lost" only when every position is certain (the snapshot L1 of an L1-zeroed image)', () => {
    const f = p('s.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x51 0 64k']);
    qemuImg('snapshot', '-c', 'before', f);
    zeroL1(f);
    const r = cli(f, p('s.out'), '--snapshot', 'before', '--json');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout) as SalvageReport;
    expect(j.outcome).toMatchObject({ exitCode: 0, lost: 0, guessed: 0 });
    expect(j.outcome!.words).toMatch(/nothing lost/);
    expect(j.views[0]!.placement).toEqual([
      { start: 0, end: 2 * MIB, how: 'from-snapshot-l1', confidence: 1, detail: 'L1 table of snapshot 1' },
    ]);
  });

  it('exit 2 when a range is lost and every recovered position is certain', () => {
    const f = p('l.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x61 0 4k', 'write -P 0x62 4M 4k']);
    const l1 = Number(readU64(f, 40));
    const l2 = Number(readU64(f, l1 + 16) & 0x00ffffffffffff00n);
    writeBytes(f, l2, new Uint8Array(4096).fill(0xff)); // the second table destroyed
    const r = cli(f, p('l.out'));
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(
      /Outcome: recovered with losses; 2\.00 MiB lost \(written as zeros\); every recovered byte's position is certain/,
    );
    expect(r.stdout).toMatch(/guest 0x0\.\.0x200000: from the L1 table — active L1 table/);
  });

  it('exit 6 when data was placed by guess and a range is lost (its backing file is missing)', () => {
    const base = p('b6-base.raw');
    writeFileSync(base, Buffer.alloc(8 * MIB, 0x42));
    const f = p('b6.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 }, { file: 'b6-base.raw', format: 'raw' });
    qemuIo(f, ['write -P 0x61 0 4k', 'write -P 0x62 5M 4k']);
    zeroL1(f);
    writeFileSync(base, ''); // the backing file's data is gone
    const r = cli(f, p('b6.out'), '--backing', p('nowhere.raw'));
    expect(r.status).toBe(6);
    expect(r.stdout).toMatch(
      /Outcome: recovered with losses; .* lost \(written as zeros\); 8\.00 KiB placed by guess, confidence 0\.4/,
    );
  });

  it('documents the exit statuses in its help', () => {
    const h = run('node', ['bin/qcow2-doctor.cjs', 'salvage', '--help']);
    expect(h.stdout).toMatch(/ {2}4 {2}recovered; some data was placed in the disk by guess/);
    expect(h.stdout).toMatch(/ {2}0 {2}recovered; every recovered byte's position is certain/);
  });
});

describe('evidence in the guest data places lost tables', () => {
  it('ext4 superblock copies in every block group: every table pinned, exit 0 with the L1 zeroed', async () => {
    const raw = p('ext.raw');
    writeFileSync(raw, new Uint8Array(8 * MIB));
    // 1 KiB blocks, 2 MiB groups, a superblock copy in every group: one per 2 MiB L2 table.
    const mk = run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-g', '2048', '-O', '^sparse_super,^resize_inode', raw]);
    expect(mk.status, mk.stderr).toBe(0);
    const f = qcow2WithZeroedL1(raw, 'ext.qcow2');
    const r = await salvageImage(f, p('ext.out'));
    expect(evidenceSlots(r)).toEqual([0, 1, 2, 3]);
    expect(r.views[0]!.l2Tables.find((x) => x.l1Index === 2)!.evidence).toMatch(
      /ext4 superblock backup \(block group 2\); ext volume at guest 0 \(the only start at which it fits in the disk\)/,
    );
    expect(r.outcome).toMatchObject({ exitCode: 0, guessed: 0 });
    expect(readFileSync(p('ext.out')).equals(readFileSync(raw))).toBe(true);
  });

  it('ext4 with sparse superblock backups: the tables holding a copy are pinned, the rest are guesses', async () => {
    const raw = p('ext2.raw');
    writeFileSync(raw, new Uint8Array(32 * MIB));
    const mk = run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-g', '2048', raw]);
    expect(mk.status, mk.stderr).toBe(0);
    const f = qcow2WithZeroedL1(raw, 'ext2.qcow2');
    const r = await salvageImage(f, p('ext2.out'));
    // Copies in groups 0, 1, 3, 5, 7, 9 (2 MiB groups of 1 KiB blocks starting at block 1).
    expect(evidenceSlots(r)).toEqual([0, 1, 3, 5, 7, 9]);
    expect(guessedSlots(r).length).toBeGreaterThan(0);
    expect(r.outcome!.exitCode).toBe(4);
    const checked = certainRangesMatch(r.views[0]!, readFileSync(p('ext2.out')), readFileSync(raw));
    expect(checked).toBe(6 * 2 * MIB);
  });

  it('ext4 inside an MBR partition: the partition table pins its start; superblock copies pin their tables', async () => {
    const fsImg = p('part-fs.raw');
    writeFileSync(fsImg, new Uint8Array(16 * MIB));
    expect(run('mkfs.ext4', ['-q', '-F', '-b', '1024', '-g', '2048', fsImg]).status).toBe(0);
    const raw = p('part.raw');
    const disk = Buffer.alloc(40 * MIB);
    disk.set(mbr([{ type: 0x83, start: 2048, count: (16 * MIB) / 512 }]), 0);
    disk.set(readFileSync(fsImg), MIB);
    writeFileSync(raw, disk);
    const f = qcow2WithZeroedL1(raw, 'part.qcow2');
    const r = await salvageImage(f, p('part.out'));
    // MBR at 0 (slot 0); superblock copies at 1 MiB + group start: groups 1, 3, 5, 7 in slots 1, 3, 5, 7.
    expect(evidenceSlots(r)).toEqual([0, 1, 3, 5, 7]);
    const slot0 = r.views[0]!.l2Tables.find((x) => x.l1Index === 0)!;
    expect(slot0.evidence).toMatch(/MBR partition table/);
    expect(r.views[0]!.l2Tables.find((x) => x.l1Index === 3)!.evidence).toMatch(/the only partition it fits/);
    certainRangesMatch(r.views[0]!, readFileSync(p('part.out')), disk);
  });

  it('an NTFS boot sector and its backup record their partition: both tables pinned', async () => {
    const raw = p('ntfs.raw');
    const disk = Buffer.alloc(24 * MIB);
    const start = 2048; // sectors
    const total = (20 * MIB) / 512 - 1; // the backup boot sector is the partition's last sector
    disk.set(mbr([{ type: 0x07, start, count: total + 1 }]), 0);
    const boot = ntfsBoot(start, total);
    disk.set(boot, start * 512);
    disk.set(boot, (start + total) * 512);
    disk.fill(0x4e, 9 * MIB, 9 * MIB + 8192); // data with no clue: its table stays a guess
    writeFileSync(raw, disk);
    const f = qcow2WithZeroedL1(raw, 'ntfs.qcow2');
    const r = await salvageImage(f, p('ntfs.out'));
    // The MBR and the boot sector share slot 0's table; the backup sits in the last sector before 21 MiB (slot 10).
    expect(evidenceSlots(r)).toEqual([0, 10]);
    expect(r.views[0]!.l2Tables.find((x) => x.l1Index === 10)!.evidence).toMatch(/NTFS boot sector/);
    expect(guessedSlots(r)).toHaveLength(1);
    certainRangesMatch(r.views[0]!, readFileSync(p('ntfs.out')), disk);
  });

  it('an LVM label that fills the disk pins its table', async () => {
    const raw = p('lvm.raw');
    const disk = Buffer.alloc(16 * MIB);
    disk.set(lvmLabel(16 * MIB), 512);
    disk.fill(0x4c, 6 * MIB, 6 * MIB + 4096);
    writeFileSync(raw, disk);
    const f = qcow2WithZeroedL1(raw, 'lvm.qcow2');
    // Two tables: the label's (slot 0) is pinned; the other one, alone for the 7 slots left, is a guess.
    const r = await salvageImage(f, p('lvm.out'));
    expect(evidenceSlots(r)).toEqual([0]);
    expect(r.views[0]!.l2Tables.find((x) => x.l1Index === 0)!.evidence).toMatch(/LVM physical volume label/);
    expect(r.outcome!.exitCode).toBe(4);
  });

  it('the one table left for the one slot left of a disk of known size is certain', async () => {
    const f = p('one.qcow2');
    createQcow2(f, '2M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x71 1M 8k']);
    const want = truth(f, 'one.ref');
    zeroL1(f);
    const r = await salvageImage(f, p('one.out'));
    expect(r.views[0]!.l2Tables).toMatchObject([{ l1Index: 0, source: 'only-slot', confidence: 1 }]);
    expect(r.views[0]!.placement[0]!.how).toBe('by-elimination');
    expect(r.outcome!.exitCode).toBe(0);
    expect(readFileSync(p('one.out')).equals(want)).toBe(true);
  });
});

/** A master boot record with these primary partitions (LBA start and count). */
function mbr(parts: Array<{ type: number; start: number; count: number }>): Buffer {
  const b = Buffer.alloc(512);
  parts.forEach((x, i) => {
    const e = 446 + i * 16;
    b[e + 4] = x.type;
    b.writeUInt32LE(x.start, e + 8);
    b.writeUInt32LE(x.count, e + 12);
  });
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** An NTFS boot sector: OEM ID, 512-byte sectors, 8 sectors per cluster, hidden sectors, total sectors. */
function ntfsBoot(hidden: number, total: number): Buffer {
  const b = Buffer.alloc(512);
  b.set([0xeb, 0x52, 0x90], 0);
  b.write('NTFS    ', 3, 'latin1');
  b.writeUInt16LE(512, 11);
  b[13] = 8;
  b[21] = 0xf8;
  b.writeUInt32LE(hidden, 28);
  b.writeBigUInt64LE(BigInt(total), 40);
  b.writeBigUInt64LE(4n, 48); // $MFT cluster
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** An LVM2 physical volume label in sector 1, for a physical volume of `size` bytes. */
function lvmLabel(size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write('LABELONE', 0, 'latin1');
  b.writeBigUInt64LE(1n, 8);
  b.writeUInt32LE(32, 20);
  b.write('LVM2 001', 24, 'latin1');
  b.write('AbCdEfGhIjKlMnOpQrStUvWxYz012345', 32, 'latin1');
  b.writeBigUInt64LE(BigInt(size), 64);
  return b;
}
