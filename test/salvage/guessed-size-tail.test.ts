// Regression test for a class the differential campaign found (seed 20261210, case 29): an overlay
// whose header cluster was zeroed. Its size went with the header, so salvage guesses it from the last
// mapped cluster; past that guess the disk went on, reading from a backing file whose name is lost
// too. Salvage named every unallocated range below its guess, but not the tail past it, where the
// base's data lay. The tail is named now (its length unknown: up to what a qcow2 L1 can address).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-size-tail-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1 << 20;

interface Lost {
  start: number;
  end: number;
  reason: string;
}

function salvage(f: string, name: string, extra: string[] = []): { status: number; lost: Lost[]; size: number } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep, ...extra]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Lost[]; virtualSize: number }> };
  return { status: r.status, lost: report.views[0]!.lost, size: report.views[0]!.virtualSize };
}

describe('salvage of an overlay whose header is lost, when its size can only be guessed', () => {
  const base = join(t.dir, 'base.qcow2');
  const top = join(t.dir, 'top.qcow2');
  createQcow2(base, '8M', { cluster_size: 65536 });
  qemuIo(base, [`write -P 0xbb ${7 * MIB} 64k`]);
  createQcow2(top, '8M', { cluster_size: 65536 }, { file: 'base.qcow2', format: 'qcow2' });
  qemuIo(top, ['write -P 0x11 0 64k']);
  writeBytes(top, 0, new Uint8Array(65536));

  it('names the range past the guessed end, where the lost backing file had data', () => {
    const s = salvage(top, 'guessed');
    expect(s.status).toBe(2);
    expect(s.size).toBe(MIB); // the guess: the last mapped cluster, rounded up to a MiB
    const tail = s.lost.find((l) => l.start === s.size);
    expect(tail?.reason).toMatch(/beyond the guessed end of the disk: its size was lost with the header/);
    expect(tail!.end).toBeGreaterThanOrEqual(8 * MIB);
  });

  it('with --virtual-size the size is known: no tail is named', () => {
    const s = salvage(top, 'sized', ['--virtual-size', String(8 * MIB)]);
    expect(s.status).toBe(2);
    expect(s.lost.some((l) => /beyond the guessed end/.test(l.reason))).toBe(false);
    expect(s.lost.at(-1)!.end).toBe(8 * MIB);
  });
});
