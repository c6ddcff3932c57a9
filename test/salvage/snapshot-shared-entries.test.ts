// Salvage of an active L2 entry that was zeroed while a snapshot's L2 still maps the same cluster.
// The cluster's refcount counts the active disk's reference, which no table holds any more: the
// active disk held it, so salvage reads it back there and says why. When the refcount's excess does
// not match the empty entries, the range may or may not have held it: salvage reports it lost,
// naming the cluster, and never says "nothing lost".
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU16, patchU64, qemuImg, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-shared-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const CS = 4096;
const OFFSET = 0x00ff_ffff_ffff_fe00n;

interface Salvaged {
  status: number;
  stdout: string;
  out: Buffer;
  lost: Array<{ start: number; end: number; reason: string }>;
}

function salvage(f: string, name: string): Salvaged {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  const report = JSON.parse(readFileSync(rep, 'utf8')) as { views: Array<{ lost: Salvaged['lost'] }> };
  return { status: r.status, stdout: r.stdout, out: readFileSync(out), lost: report.views[0]!.lost };
}

const filled = (b: Buffer, from: number, to: number, v: number): boolean => b.subarray(from, to).every((x) => x === v);

/** Data at guest 0 and 64k, a snapshot, then a write that gives the active disk its own L2 copy;
 * the active L2 entry of guest 0 is zeroed. Returns the data cluster of guest 0. */
function damaged(f: string): number {
  createQcow2(f, '8M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 4k', 'write -P 0x33 64k 4k']);
  qemuImg('snapshot', '-c', 's1', f);
  qemuIo(f, ['write -P 0x77 8k 4k']);
  const l1 = Number(readU64(f, 40));
  const l2 = Number(readU64(f, l1) & OFFSET);
  const data = Number(readU64(f, l2) & OFFSET);
  patchU64(f, l2, 0);
  return data;
}

describe('salvage of an active entry lost while a snapshot still maps its cluster', () => {
  it('the refcount counts exactly the lost reference: the data comes back at its place, exit 0', () => {
    const f = join(t.dir, 'exact.qcow2');
    damaged(f);
    const s = salvage(f, 'exact');
    expect(s.status, s.stdout).toBe(0);
    expect(s.lost).toEqual([]);
    expect(s.stdout).toMatch(/1 empty L2 entry lost a cluster another disk still maps \(by the refcounts\)/);
    expect(filled(s.out, 0, CS, 0x11)).toBe(true);
    expect(filled(s.out, 8192, 8192 + CS, 0x77)).toBe(true);
    expect(filled(s.out, 65536, 65536 + CS, 0x33)).toBe(true);
  });

  it('a refcount excess that does not match the empty entries: the range is reported lost, exit 2', () => {
    const f = join(t.dir, 'excess.qcow2');
    const data = damaged(f);
    // Two references no table holds, one empty entry: which table lost what cannot be told.
    const reftable = Number(readU64(f, 48));
    const block = Number(readU64(f, reftable));
    patchU16(f, block + (data / CS) * 2, 3);
    const s = salvage(f, 'excess');
    expect(s.status, s.stdout).toBe(2);
    expect(s.lost.map((l) => [l.start, l.end])).toEqual([[0, CS]]);
    expect(s.lost[0]!.reason).toMatch(/may have held it/);
    expect(filled(s.out, 0, CS, 0)).toBe(true);
    expect(filled(s.out, 65536, 65536 + CS, 0x33)).toBe(true);
  });

  it('an entry the guest discarded after the snapshot (refcount without excess) stays unallocated, exit 0', () => {
    const f = join(t.dir, 'discard.qcow2');
    createQcow2(f, '8M', { cluster_size: CS });
    qemuIo(f, ['write -P 0x11 0 4k', 'write -P 0x33 64k 4k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['discard 0 4k']);
    const s = salvage(f, 'discard');
    expect(s.status, s.stdout).toBe(0);
    expect(filled(s.out, 0, CS, 0)).toBe(true);
    expect(filled(s.out, 65536, 65536 + CS, 0x33)).toBe(true);
  });
});
