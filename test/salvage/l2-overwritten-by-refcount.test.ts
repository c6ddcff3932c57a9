// Salvage of an L2 table whose cluster was overwritten with a copy of the refcount table or of a
// refcount block. Read as L2 entries, the refcount table's offsets point at refcount blocks and a
// 64-bit block's counts of 1 look like "zero" flags: the L1 slot's whole guest span must be reported
// lost (never zeros, never metadata as data, never exit 0), and every other byte must be right.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readBytes, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-l2-refcount-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1 << 20;
const OFFSET = 0x00ff_ffff_ffff_fe00n;

interface Report {
  views: Array<{ lost: Array<{ start: number; end: number; reason: string }>; bytes: { lost: number } }>;
  outcome: { exitCode: number };
}

/** Overwrite the first L2 table with a copy of the refcount table (or of its first block), then salvage. */
function salvageDamaged(name: string, f: string, copy: 'table' | 'block', span: number) {
  const intact = join(t.dir, `${name}.intact.raw`);
  qemuImg('convert', '-O', 'raw', f, intact);
  const l1 = Number(readU64(f, 40));
  const rt = Number(readU64(f, 48));
  const l2 = Number(readU64(f, l1) & OFFSET);
  const source = copy === 'table' ? rt : Number(readU64(f, rt));
  writeBytes(f, l2, readBytes(f, source, span));
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as Report;
  return { r, report, got: readFileSync(out), want: readFileSync(intact), l2, source };
}

/** The view with only its certain losses: the data the destroyed table mapped is still in the file,
 * live and unmapped, so the unallocated ranges are also named as where it may belong. */
function certain<V extends { lost: Array<{ reason: string }> }>(v: V): V {
  return { ...v, lost: v.lost.filter((l) => !/^possibly lost/.test(l.reason)) };
}

/** Every byte outside the lost ranges reads as in the intact image. */
function expectRecoveredRight(got: Buffer, want: Buffer, lost: Array<{ start: number; end: number }>): void {
  expect(got.length).toBe(want.length);
  let at = 0;
  for (const l of [...lost, { start: want.length, end: want.length }]) {
    expect(got.subarray(at, l.start).equals(want.subarray(at, l.start))).toBe(true);
    at = l.end;
  }
}

describe('salvage of an L2 table overwritten by refcount metadata', () => {
  it('a 64-bit refcount block copied onto the L2 table: its 2 MiB span is lost, exit 2', () => {
    const f = join(t.dir, 'rb64.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096, refcount_bits: 64 });
    qemuIo(f, ['write -P 0x11 0 16k', 'write -P 0x22 1M 8k', 'write -P 0x33 3M 4k']);
    const { r, report, got, want, l2, source } = salvageDamaged('rb64', f, 'block', 4096);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    expect(r.stdout).not.toMatch(/nothing lost/);
    expect(report.outcome.exitCode).toBe(2);
    const v = certain(report.views[0]!);
    expect(v.lost).toEqual([
      {
        start: 0,
        end: 2 * MIB,
        reason: `the L2 table at 0x${l2.toString(16)} holds a copy of the refcount block at 0x${source.toString(16)}: its content was overwritten, the data it mapped is lost`,
      },
    ]);
    expect(v.bytes.lost).toBe(2 * MIB);
    expect(got.subarray(3 * MIB, 3 * MIB + 4096).every((b) => b === 0x33)).toBe(true);
    expectRecoveredRight(got, want, v.lost);
  });

  it('the refcount table copied onto the L2 table (16-bit refcounts): the span is lost, not read as data', () => {
    const f = join(t.dir, 'rt16.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096, refcount_bits: 16 });
    qemuIo(f, ['write -P 0x44 0 64k', 'write -P 0x55 1M 52k', 'write -P 0x66 5M 8k']);
    const { r, report, got, want } = salvageDamaged('rt16', f, 'table', 4096);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    const v = certain(report.views[0]!);
    expect(v.lost.map((l) => [l.start, l.end])).toEqual([[0, 2 * MIB]]);
    expect(v.lost[0]!.reason).toMatch(/holds a copy of the refcount table at 0x/);
    expect(got.subarray(5 * MIB, 5 * MIB + 8192).every((b) => b === 0x66)).toBe(true);
    expectRecoveredRight(got, want, v.lost);
  });

  it('the refcount table copied onto the L2 table of an overlay (64 KiB clusters): the span is lost, the rest right', () => {
    const base = join(t.dir, 'base.qcow2');
    createQcow2(base, '520M', { cluster_size: 65536 });
    qemuIo(base, ['write -P 0x77 0 1M', 'write -P 0x78 514M 64k']);
    const f = join(t.dir, 'overlay.qcow2');
    createQcow2(f, '520M', { cluster_size: 65536, refcount_bits: 16 }, { file: base, format: 'qcow2' });
    qemuIo(f, ['write -P 0x88 64k 128k', 'write -P 0x99 3M 64k', 'write -P 0xaa 516M 64k']);
    const { r, report, got, want } = salvageDamaged('overlay', f, 'table', 65536);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    const v = certain(report.views[0]!);
    expect(v.lost.map((l) => [l.start, l.end])).toEqual([[0, 512 * MIB]]);
    expect(got.subarray(516 * MIB, 516 * MIB + 65536).every((b) => b === 0xaa)).toBe(true);
    expect(got.subarray(514 * MIB, 514 * MIB + 65536).every((b) => b === 0x78)).toBe(true);
    expectRecoveredRight(got, want, v.lost);
  });
});
