// Salvage of an image whose L1 table lost one of its clusters (512-byte clusters: the L1 spans
// several): the L2 tables of those slots are still in the file, live by their refcount, but the
// rest of the L1 looks intact, so nothing says where they belong. Salvage leaves them out, reports
// their data lost (the free slots as the ranges it may have come from), exits 2, never "nothing
// lost"; --place-orphans puts them back by guess (exit 4).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-unplaced-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const KIB = 1024;
const MIB = 1024 * KIB;

interface Report {
  views: Array<{
    lost: Array<{ start: number; end: number; reason: string }>;
    bytes: { lost: number; guessed: number };
  }>;
  outcome: { exitCode: number; words: string };
  warnings: string[];
}

function salvage(f: string, name: string, extra: string[] = []): { status: number; out: Buffer; report: Report } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep, ...extra]);
  return { status: r.status, out: readFileSync(out), report: JSON.parse(readFileSync(rep, 'utf8')) as Report };
}

describe('salvage of an L1 table with one cluster zeroed', () => {
  const f = join(t.dir, 'l1cluster.qcow2');
  // 512-byte clusters: an L2 table maps 32 KiB, one L1 cluster 64 slots = 2 MiB of guest disk.
  createQcow2(f, '8M', { cluster_size: 512 });
  qemuIo(f, ['write -P 0x11 0 2k', 'write -P 0x22 5M 2k', 'write -P 0x33 7M 1k']);
  const l1 = Number(readU64(f, 40));
  writeBytes(f, l1 + 2 * 512, new Uint8Array(512)); // slots 128..191: guest 4 MiB..6 MiB

  it('leaves the live L2 table out, reports its 2 KiB lost with the free slots it may belong to, exit 2', () => {
    const s = salvage(f, 'default');
    expect(s.status).toBe(2);
    const v = s.report.views[0]!;
    expect(v.bytes.lost).toBe(2 * KIB);
    expect(s.report.outcome.words).toMatch(/^recovered with losses; 2\.00 KiB lost/);
    expect(s.report.warnings.join('\n')).toMatch(/1 L2 table\(s\) referenced by no L1 .* are live by their refcount/);
    const covers = (at: number): boolean => v.lost.some((l) => l.start <= at && l.end >= at + 2 * KIB);
    expect(covers(5 * MIB)).toBe(true);
    expect(v.lost.every((l) => /possibly lost/.test(l.reason))).toBe(true);
    expect(s.out.subarray(0, 2 * KIB).every((b) => b === 0x11)).toBe(true);
    expect(s.out.subarray(7 * MIB, 7 * MIB + KIB).every((b) => b === 0x33)).toBe(true);
    expect(s.out.subarray(5 * MIB, 5 * MIB + 2 * KIB).every((b) => b === 0)).toBe(true);
  });

  it('with --place-orphans the table goes back by guess: exit 4, its data in the disk', () => {
    const s = salvage(f, 'placed', ['--place-orphans']);
    expect(s.status).toBe(4);
    expect(s.report.views[0]!.bytes.guessed).toBe(2 * KIB);
    let found = 0;
    for (let o = 0; o + 512 <= s.out.length; o += 512) if (s.out[o] === 0x22) found++;
    expect(found).toBe(4);
  });
});

describe('salvage of an image whose snapshot L1 was zeroed', () => {
  it("the snapshot's live tables are not charged to the active disk: exit 0, every active byte back", () => {
    const f = join(t.dir, 'snapl1.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 4k']);
    run('qemu-img', ['snapshot', '-c', 's1', f]);
    qemuIo(f, ['write -P 0x22 0 4k']);
    const snapTable = Number(readU64(f, 64));
    const snapL1 = Number(readU64(f, snapTable));
    writeBytes(f, snapL1, new Uint8Array(4096));
    const s = salvage(f, 'snapl1');
    expect(s.status).toBe(0);
    expect(s.report.views[0]!.lost).toEqual([]);
    expect(s.report.warnings.join('\n')).toMatch(/may belong to a snapshot whose L1 table is damaged or lost/);
    expect(s.out.subarray(0, 4096).every((b) => b === 0x22)).toBe(true);
  });
});
