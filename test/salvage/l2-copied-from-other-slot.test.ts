// Salvage of an active L2 table overwritten with a snapshot's L2 table that sits under a different L1
// slot. QEMU never leaves two tables with the same entries at two slots, so the active slot would read
// the other span's data at a "certain" place. The slot must be named lost instead (exit 2), and every
// byte outside the named ranges must read as the intact disk does.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readBytes, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-l2-copied-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1 << 20;
const OFFSET = 0x00ff_ffff_ffff_fe00n;
const CS = 4096;

interface Lost {
  start: number;
  end: number;
  reason: string;
}
interface Report {
  views: Array<{ lost: Lost[] }>;
  outcome: { exitCode: number };
}

/** Snapshot with data in span 1 (2–4 MiB), then `after` writes; then the active slot 3 table := the snapshot's slot 1 table. */
function damaged(name: string, after: string[]) {
  const f = join(t.dir, `${name}.qcow2`);
  createQcow2(f, '8M', { cluster_size: CS, refcount_bits: 16 });
  qemuIo(f, ['write -P 0x11 2M 16k', 'write -P 0x12 3M 8k']);
  qemuImg('snapshot', '-c', 'before', f);
  qemuIo(f, [...after, 'write -P 0x33 6M 8k']);
  const intact = join(t.dir, `${name}.intact.raw`);
  qemuImg('convert', '-O', 'raw', f, intact);
  const l1 = Number(readU64(f, 40));
  const snapL1 = Number(readU64(f, Number(readU64(f, 64))));
  const source = Number(readU64(f, snapL1 + 8) & OFFSET);
  const target = Number(readU64(f, l1 + 24) & OFFSET);
  expect(target).not.toBe(source);
  writeBytes(f, target, readBytes(f, source, CS));
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as Report;
  return { r, report, got: readFileSync(out), want: readFileSync(intact), target };
}

/** Every byte outside the named ranges reads as in the intact image. */
function expectRecoveredRight(got: Buffer, want: Buffer, lost: Lost[]): void {
  expect(got.length).toBe(want.length);
  let at = 0;
  for (const l of [...[...lost].sort((a, b) => a.start - b.start), { start: want.length, end: want.length }]) {
    expect(got.subarray(at, l.start).equals(want.subarray(at, l.start)), `guest ${at}..${l.start}`).toBe(true);
    at = Math.max(at, l.end);
  }
}

const certain = (lost: Lost[]): Lost[] => lost.filter((l) => !/^possibly lost/.test(l.reason));

describe('salvage of an active L2 table overwritten with a snapshot table of another slot', () => {
  it("the active slot's copy-on-write table shares the content's data: only the overwritten span is lost", () => {
    const { r, report, got, want, target } = damaged('cow', ['write -P 0x22 2M 4k']);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    expect(r.stdout).not.toMatch(/nothing lost/);
    const lost = certain(report.views[0]!.lost);
    expect(lost.map((l) => [l.start, l.end])).toEqual([[6 * MIB, 8 * MIB]]);
    expect(lost[0]!.reason).toContain(
      `the L2 table at 0x${target.toString(16)} holds the entries of L1 index 1's table`,
    );
    // Span 1 is the active disk's own (with its copy-on-write change), not the snapshot's.
    expect(got.subarray(2 * MIB, 2 * MIB + 4096).every((b) => b === 0x22)).toBe(true);
    expectRecoveredRight(got, want, report.views[0]!.lost);
  });

  it('the active disk still shares the snapshot table: which copy is the original cannot be told, both spans are lost', () => {
    const { r, report, got, want } = damaged('shared', []);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    const lost = certain(report.views[0]!.lost);
    expect(lost.map((l) => [l.start, l.end])).toEqual([
      [2 * MIB, 4 * MIB],
      [6 * MIB, 8 * MIB],
    ]);
    expect(lost[0]!.reason).toMatch(/hold the same entries at L1 indexes/);
    expectRecoveredRight(got, want, report.views[0]!.lost);
  });
});
