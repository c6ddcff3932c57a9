// Salvage of an L2 table overwritten with another L2 table's content: both tables now map the same
// data clusters, whose refcount (1) says only one of them may. Which one is damaged cannot be told
// from the tables, so neither is read as certain: the data of both ranges is "placed by guess".
// The overwritten table's own data clusters are still live but no table maps them: that data is
// lost from the disk, so the exit is 6 (guessed and lost), never 0 with "nothing lost" nor 4.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, readBytes, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-dup-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1 << 20;
const OFFSET = 0x00ff_ffff_ffff_fe00n;

describe('salvage of an L2 table overwritten by another L2 table', () => {
  it('both ranges are placed by guess, the overwritten data reported lost (exit 6), the surviving table still read', () => {
    const f = join(t.dir, 'dup.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 16k', 'write -P 0x55 4M 16k', 'write -P 0x66 6M 4k']);
    const l1 = Number(readU64(f, 40));
    const first = Number(readU64(f, l1) & OFFSET);
    const third = Number(readU64(f, l1 + 16) & OFFSET);
    writeBytes(f, first, readBytes(f, third, 4096));
    const out = join(t.dir, 'dup.raw');
    const rep = join(t.dir, 'dup.json');
    const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
    expect(r.status, r.stdout + r.stderr).toBe(6);
    expect(r.stdout).toMatch(/4 data cluster\(s\) are mapped by more entries than their refcount counts/);
    expect(r.stdout).toMatch(/4 data cluster\(s\) .* are live by their refcount but no table maps them/);
    const report = JSON.parse(readFileSync(rep, 'utf8')) as {
      views: Array<{ placement: Array<{ start: number; end: number; how: string }>; bytes: { guessed: number } }>;
      outcome: { exitCode: number };
    };
    const v = report.views[0]!;
    expect(v.bytes.guessed).toBe(2 * 16384);
    const how = (start: number): string | undefined => v.placement.find((p) => p.start === start)?.how;
    expect(how(0)).toBe('by-guess');
    expect(how(4 * MIB)).toBe('by-guess');
    expect(how(6 * MIB)).toBe('from-l1');
    expect(report.outcome.exitCode).toBe(6);
    const raw = readFileSync(out);
    expect(raw.subarray(4 * MIB, 4 * MIB + 16384).every((b) => b === 0x55)).toBe(true);
    expect(raw.subarray(6 * MIB, 6 * MIB + 4096).every((b) => b === 0x66)).toBe(true);
  });
});
