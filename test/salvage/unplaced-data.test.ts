// Salvage of an image whose L2 table lost a few entries (zeroed) while their data clusters stay
// allocated: the refcounts still count them, but no table maps them, so the guest range reads as
// unallocated. The data is in the file; where it belongs is unknown. Salvage must not say "nothing
// lost": it reports the data lost (exit 2), names the unallocated ranges as where it may belong, and
// --lost-found copies it out. The data here reads like a refcount block (bytes 0x01: 16-bit
// refcounts of 257), which must not hide it: only the blocks the header's refcount table names are
// refcount blocks.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuCheck, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-unplaced-data-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const KIB = 1024;
const MIB = 1024 * KIB;
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

interface Report {
  views: Array<{ lost: Array<{ start: number; end: number; reason: string }>; bytes: { lost: number } }>;
  outcome: { exitCode: number; words: string };
  warnings: string[];
  lostFound?: { clusters: number };
}

function salvage(f: string, name: string, extra: string[] = []): { status: number; out: Buffer; report: Report } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep, ...extra]);
  return { status: r.status, out: readFileSync(out), report: JSON.parse(readFileSync(rep, 'utf8')) as Report };
}

const filled = (b: Buffer, from: number, len: number, v: number): boolean =>
  b.subarray(from, from + len).every((x) => x === v);

describe('salvage of an L2 table with entries zeroed whose data clusters stay allocated', () => {
  const f = join(t.dir, 'zeroed-entries.qcow2');
  createQcow2(f, '8M', { cluster_size: 4096 });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x01 1M 64k', 'write -P 0x33 3M 8k']);

  it('the intact image salvages with nothing lost (data that reads like a refcount block is data)', () => {
    const s = salvage(f, 'intact');
    expect(s.status).toBe(0);
    expect(s.report.views[0]!.lost).toEqual([]);
  });

  it('reports the unmapped data lost, names where it may belong, exit 2; everything else comes back', () => {
    const l2 = Number(readU64(f, Number(readU64(f, 40))) & OFFSET_MASK);
    // Guest 1 MiB .. 1 MiB + 16 KiB: entries 256..259 of the first L2 table.
    writeBytes(f, l2 + 256 * 8, new Uint8Array(4 * 8));
    expect(qemuCheck(f).json?.leaks).toBe(4);
    const s = salvage(f, 'zeroed', ['--lost-found', join(t.dir, 'found.bin')]);
    expect(s.status).toBe(2);
    const v = s.report.views[0]!;
    expect(v.bytes.lost).toBe(16 * KIB);
    expect(s.report.outcome.words).toMatch(/^recovered with losses; 16\.0 KiB lost/);
    expect(s.report.warnings.join('\n')).toMatch(
      /4 data cluster\(s\) .* are live by their refcount but no table maps them/,
    );
    const named = v.lost.find((l) => l.start <= MIB && l.end >= MIB + 16 * KIB);
    expect(named?.reason).toMatch(/^possibly lost/);
    // Ranges that hold data are not named.
    expect(v.lost.some((l) => l.start < 64 * KIB || (l.start < 3 * MIB + 8 * KIB && l.end > 3 * MIB))).toBe(false);
    expect(filled(s.out, 0, 64 * KIB, 0x11)).toBe(true);
    expect(filled(s.out, MIB, 16 * KIB, 0)).toBe(true);
    expect(filled(s.out, MIB + 16 * KIB, 48 * KIB, 0x01)).toBe(true);
    expect(filled(s.out, 3 * MIB, 8 * KIB, 0x33)).toBe(true);
    // The data itself is copied out.
    expect(s.report.lostFound?.clusters).toBe(4);
    expect(readFileSync(join(t.dir, 'found.bin')).every((x) => x === 0x01)).toBe(true);
  });
});
