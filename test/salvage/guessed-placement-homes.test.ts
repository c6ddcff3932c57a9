// Salvage that places L2 tables into free L1 slots by guess (the active L1 zeroed, nothing pinning
// the tables): a guessed table may belong in any of the free slots, so the slots left empty are named
// as possibly lost. Then the report holds against the guest's real content: every byte that differs
// lies in a range the report calls lost or placed by guess (exit 4), none in a range it presents as
// certainly unallocated.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-guess-homes-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const MIB = 1024 * 1024;

interface Report {
  views: Array<{
    lost: Array<{ start: number; end: number; reason: string }>;
    placement: Array<{ start: number; end: number; how: string }>;
  }>;
}

describe('salvage of a zeroed L1 whose tables go back by guess', () => {
  it('names the free slots left empty as possibly lost: every differing byte is in a named range, exit 4', () => {
    const f = join(t.dir, 'zl1.qcow2');
    // 4 KiB clusters: an L2 table maps 2 MiB; data in slots 0, 4 and 6 of 8.
    createQcow2(f, '16M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 9M 64k', 'write -P 0x33 13M 32k']);
    qemuImg('convert', '-f', 'qcow2', '-O', 'raw', f, join(t.dir, 'truth.raw'));
    const want = readFileSync(join(t.dir, 'truth.raw'));
    const l1 = Number(readU64(f, 40));
    writeBytes(f, l1, new Uint8Array(8 * 8));
    const out = join(t.dir, 'zl1.raw');
    const rep = join(t.dir, 'zl1.json');
    const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
    expect(r.status, r.stdout + r.stderr).toBe(4);
    const v = (JSON.parse(readFileSync(rep, 'utf8')) as Report).views[0]!;
    const got = readFileSync(out);
    const named = [...v.lost, ...v.placement.filter((p) => p.how === 'by-guess')];
    const inNamed = (at: number): boolean => named.some((n) => n.start <= at && at < n.end);
    let differing = 0;
    for (let s = 0; s < want.length; s += 512) {
      if (got.subarray(s, s + 512).equals(want.subarray(s, s + 512))) continue;
      differing++;
      expect(inNamed(s), `guest 0x${s.toString(16)} differs outside every named range`).toBe(true);
    }
    // The guess did misplace data (the 9 MiB table sits in slot 1 or 2): the check above had work to do.
    expect(differing).toBeGreaterThan(0);
    const home = v.lost.find((l) => l.start <= 9 * MIB && l.end >= 9 * MIB + 64 * 1024);
    expect(home?.reason).toMatch(/^possibly lost: L2 tables were placed into the free L1 slots by guess/);
  });
});
