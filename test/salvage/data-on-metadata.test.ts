// Salvage of data entries redirected onto metadata: an L2 entry that points at the L2 table itself,
// the refcount table or the active L1 does not map guest data (QEMU never puts data there). The
// guest range is lost, named in the report, written as zeros, and the salvage exits 2; the rest
// of the disk comes back byte for byte.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU64, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-onmeta-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const COPIED = 1n << 63n;

interface Salvaged {
  status: number;
  out: Buffer;
  lost: Array<{ start: number; end: number; reason: string }>;
  possibly: Array<{ start: number; end: number; reason: string }>;
}

function salvage(f: string, name: string): Salvaged {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Salvaged['lost'] }> };
  // The data clusters the redirected entries held are still in the file, live and unmapped: the
  // report also names the unallocated ranges as where they may belong ("possibly lost").
  const all = report.views[0]!.lost;
  return {
    status: r.status,
    out: readFileSync(out),
    lost: all.filter((l) => !/^possibly lost/.test(l.reason)),
    possibly: all.filter((l) => /^possibly lost/.test(l.reason)),
  };
}

const filled = (b: Buffer, from: number, to: number, v: number): boolean => b.subarray(from, to).every((x) => x === v);

describe('salvage of data entries redirected onto metadata', () => {
  it('4 KiB clusters: entries onto another L2 table, the refcount table and the L1 are lost ranges, exit 2', () => {
    const f = join(t.dir, 'std.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 16k', 'write -P 0x22 1M 4k', 'write -P 0x55 4M 4k']);
    const l1 = Number(readU64(f, 40));
    const reftable = readU64(f, 48);
    const l2 = readU64(f, l1) & 0x00ff_ffff_ffff_fe00n;
    // The L2 table of guest 4M (L1 slot 2 at 2 MiB per table).
    const other = readU64(f, l1 + 16) & 0x00ff_ffff_ffff_fe00n;
    patchU64(f, Number(l2), COPIED | other);
    patchU64(f, Number(l2) + 8, COPIED | reftable);
    patchU64(f, Number(l2) + 16, COPIED | BigInt(l1));
    const s = salvage(f, 'std');
    expect(s.status).toBe(2);
    expect(s.lost.map((l) => [l.start, l.end])).toEqual([
      [0, 4096],
      [4096, 8192],
      [8192, 12288],
    ]);
    expect(s.lost[0]!.reason).toMatch(/points at the L2 table at 0x[0-9a-f]+: not guest data/);
    expect(s.lost[1]!.reason).toMatch(/points at the refcount table/);
    expect(s.lost[2]!.reason).toMatch(/points at the active L1 table/);
    expect(s.possibly.length).toBeGreaterThan(0);
    expect(filled(s.out, 0, 12288, 0)).toBe(true);
    expect(filled(s.out, 12288, 16384, 0x11)).toBe(true);
    expect(filled(s.out, 1 << 20, (1 << 20) + 4096, 0x22)).toBe(true);
    expect(filled(s.out, 4 << 20, (4 << 20) + 4096, 0x55)).toBe(true);
  });

  it('extended L2, 64 KiB clusters: an entry onto the active L1 is a lost range, exit 2', () => {
    const f = join(t.dir, 'xl2.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536, extended_l2: 'on' });
    qemuIo(f, ['write -P 0x33 0 128k', 'write -P 0x44 5M 64k']);
    const l1 = Number(readU64(f, 40));
    const l2 = readU64(f, l1) & 0x00ff_ffff_ffff_fe00n;
    // Entry 1 (16 bytes each); its subcluster bitmap still says "all allocated".
    patchU64(f, Number(l2) + 16, COPIED | BigInt(l1));
    const s = salvage(f, 'xl2');
    expect(s.status).toBe(2);
    expect(s.lost.map((l) => [l.start, l.end])).toEqual([[65536, 131072]]);
    expect(s.lost[0]!.reason).toMatch(/points at the active L1 table/);
    expect(filled(s.out, 0, 65536, 0x33)).toBe(true);
    expect(filled(s.out, 65536, 131072, 0)).toBe(true);
    expect(filled(s.out, 5 << 20, (5 << 20) + 65536, 0x44)).toBe(true);
  });

  it('a table shared with a snapshot: an entry onto the snapshot table is lost, not a guess (exit 2)', () => {
    const f = join(t.dir, 'snap.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k']);
    run('qemu-img', ['snapshot', '-c', 's1', f]);
    const l1 = Number(readU64(f, 40));
    const l2 = readU64(f, l1) & 0x00ff_ffff_ffff_fe00n;
    patchU64(f, Number(l2) + 8, readU64(f, 64)); // the snapshot table; the table is shared: no COPIED
    const s = salvage(f, 'snap');
    expect(s.status).toBe(2);
    expect(s.lost.map((l) => [l.start, l.end])).toEqual([[4096, 8192]]);
    expect(s.lost[0]!.reason).toMatch(/points at the snapshot table/);
    expect(filled(s.out, 0, 4096, 0x11)).toBe(true);
  });
});
