// Salvage of an image whose L1 entry was redirected onto metadata: the header (an offset of 0 with
// the entry's flags) or a refcount block (64-bit refcounts, whose block of ones reads like an L2 table
// of zero-flag entries). QEMU never writes such an entry: it is damaged, the L2 table it named is
// still in the file, unreferenced, and goes back into the damaged slot: with certainty when it is the
// only table for the only slot of the disk, by guess otherwise. Never zeros under "nothing lost".
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU64, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-l1-onto-meta-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const KIB = 1024;
const MIB = 1024 * KIB;
const COPIED = 1n << 63n;

interface Report {
  views: Array<{
    lost: Array<{ start: number; end: number; reason: string }>;
    placement: Array<{ start: number; end: number; how: string; confidence: number }>;
  }>;
  outcome: { exitCode: number };
}

function salvage(f: string, name: string): { status: number; out: Buffer; report: Report } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  return { status: r.status, out: readFileSync(out), report: JSON.parse(readFileSync(rep, 'utf8')) as Report };
}

const filled = (b: Buffer, from: number, len: number, v: number): boolean =>
  b.subarray(from, from + len).every((x) => x === v);

describe('salvage of an L1 entry redirected onto the header', () => {
  it('64 KiB clusters, one L1 slot: the lone table goes back by elimination, every byte, exit 0', () => {
    const f = join(t.dir, 'hdr64k.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536, refcount_bits: 1 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 40M 128k']);
    patchU64(f, Number(readU64(f, 40)), COPIED);
    const s = salvage(f, 'hdr64k');
    expect(s.status).toBe(0);
    expect(s.report.views[0]!.placement).toEqual([
      expect.objectContaining({ start: 0, end: 64 * MIB, how: 'by-elimination', confidence: 1 }),
    ]);
    expect(filled(s.out, 0, 64 * KIB, 0x11)).toBe(true);
    expect(filled(s.out, 40 * MIB, 128 * KIB, 0x22)).toBe(true);
  });

  it('4 KiB clusters, four slots: the table goes back into the damaged slot by guess, exit 4', () => {
    const f = join(t.dir, 'hdr4k.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -P 0x22 2M 8k', 'write -P 0x33 6M 4k']);
    const l1 = Number(readU64(f, 40));
    patchU64(f, l1 + 8, COPIED);
    const s = salvage(f, 'hdr4k');
    expect(s.status).toBe(4);
    const how = s.report.views[0]!.placement.find((p) => p.start === 2 * MIB);
    expect(how).toMatchObject({ how: 'by-guess' });
    expect(filled(s.out, 0, 8 * KIB, 0x11)).toBe(true);
    expect(filled(s.out, 2 * MIB, 8 * KIB, 0x22)).toBe(true);
    expect(filled(s.out, 6 * MIB, 4 * KIB, 0x33)).toBe(true);
  });
});

describe('salvage of an L1 entry redirected onto a 64-bit refcount block', () => {
  it('the block stays a refcount block, the table goes back by guess, the data at its place, exit 4', () => {
    const f = join(t.dir, 'rb64.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096, refcount_bits: 64 });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -P 0x22 2M 8k', 'write -P 0x33 6M 4k']);
    const l1 = Number(readU64(f, 40));
    const reftable = Number(readU64(f, 48));
    const block = readU64(f, reftable);
    patchU64(f, l1 + 8, block | COPIED);
    const s = salvage(f, 'rb64');
    expect(s.status).toBe(4);
    expect(s.report.views[0]!.placement.find((p) => p.start === 2 * MIB)).toMatchObject({ how: 'by-guess' });
    expect(filled(s.out, 0, 8 * KIB, 0x11)).toBe(true);
    expect(filled(s.out, 2 * MIB, 8 * KIB, 0x22)).toBe(true);
    expect(filled(s.out, 6 * MIB, 4 * KIB, 0x33)).toBe(true);
  });
});
