// Salvage of an overlay whose header cluster was zeroed: the name of its backing file went with the
// header, so what its unallocated ranges read is unknown. Salvage writes them as zeros, names them
// (as a missing backing file's ranges, never "nothing lost"), exits 2, and says how to settle it:
// --backing FILE brings them back from the base, exit 0; --no-backing says there is none.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-nohdr-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1 << 20;

interface Salvaged {
  status: number;
  stdout: string;
  out: Buffer;
  lost: Array<{ start: number; end: number; reason: string }>;
}

function salvage(f: string, name: string, extra: string[] = []): Salvaged {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep, '--virtual-size', String(8 * MIB), ...extra]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Salvaged['lost'] }> };
  return { status: r.status, stdout: r.stdout, out: readFileSync(out), lost: report.views[0]!.lost };
}

const filled = (b: Buffer, from: number, to: number, v: number): boolean => b.subarray(from, to).every((x) => x === v);

describe('salvage of an overlay whose header (and backing file name) is lost', () => {
  const base = join(t.dir, 'base.qcow2');
  const top = join(t.dir, 'top.qcow2');
  createQcow2(base, '8M', { cluster_size: 65536 });
  qemuIo(base, ['write -P 0xbb 0 8M']);
  createQcow2(top, '8M', { cluster_size: 65536 }, { file: 'base.qcow2', format: 'qcow2' });
  qemuIo(top, ['write -P 0x11 1M 64k']);
  writeBytes(top, 0, new Uint8Array(65536));
  // Everything but the overlay's own cluster reads from the base.
  const unallocated = [
    [0, MIB],
    [MIB + 65536, 8 * MIB],
  ];

  it('reports the unallocated ranges lost, exit 2, the overlay data at its place', () => {
    const s = salvage(top, 'lost');
    expect(s.status, s.stdout).toBe(2);
    expect(s.lost.map((l) => [l.start, l.end])).toEqual(unallocated);
    expect(s.lost[0]!.reason).toMatch(/name of any backing file .* pass --backing FILE, or --no-backing/);
    expect(s.stdout).toMatch(
      /Outcome: recovered with losses; .* of unallocated ranges read from a backing file that is missing or whose name was lost/,
    );
    expect(filled(s.out, MIB, MIB + 65536, 0x11)).toBe(true);
    expect(filled(s.out, 0, MIB, 0)).toBe(true);
  });

  it('with --backing the base fills them: every guest byte as QEMU reads the intact pair, exit 0', () => {
    const s = salvage(top, 'backed', ['--backing', base]);
    expect(s.status, s.stdout).toBe(0);
    expect(s.lost).toEqual([]);
    expect(filled(s.out, 0, MIB, 0xbb)).toBe(true);
    expect(filled(s.out, MIB, MIB + 65536, 0x11)).toBe(true);
    expect(filled(s.out, MIB + 65536, 8 * MIB, 0xbb)).toBe(true);
  });

  it('a damaged header whose backing fields still read "none" is believed: exit 0', () => {
    const f = join(t.dir, 'plain.qcow2');
    createQcow2(f, '8M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x22 0 64k']);
    // An unknown incompatible feature bit: QEMU refuses the header, the rest of it is intact.
    writeBytes(f, 72, new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 0]));
    expect(run('qemu-img', ['info', f]).status).not.toBe(0);
    const s = salvage(f, 'plain');
    expect(s.status, s.stdout).toBe(0);
    expect(s.lost).toEqual([]);
    expect(filled(s.out, 0, 65536, 0x22)).toBe(true);
  });
});
