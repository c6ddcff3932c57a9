// A bit flip turns an empty L2 entry into a pointer at another guest range's data cluster (refcount
// 1, now two references). The cross-link copy gives it its own cluster, but with the other range's
// bytes: that guest range is named lost. The owner is the entry with OFLAG_COPIED (QEMU sets it on
// every refcount-1 cluster) and is not named; where the entries cannot tell, both ranges are named.
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, patchU64, qemuCheck, qemuIo, readU64, tempDir } from '../helpers/qemu.js';
import { readsBack, caseFiles, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-cross-link-owner-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 65536;
const OFFSET = 0x00fffffffffffe00n;
const l2Of = (f: string): number => Number(readU64(f, Number(readU64(f, 40))) & OFFSET);

function image(name: string): { f: string; l2: number } {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: CS });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
  return { f, l2: l2Of(f) };
}

describe('a data cluster two guest ranges map, refcount 1', () => {
  it('the entry without COPIED is the one that points elsewhere: only its range is named lost', () => {
    const { f, l2 } = image('flipped');
    const first = readU64(f, l2);
    expect(first >> 63n).toBe(1n);
    patchU64(f, l2 + 3 * 8, first & OFFSET); // guest 192 KiB (empty) now maps guest 0's cluster, no COPIED
    const r = repairAll(f);
    expect(r.stderr).toMatch(/1 guest cluster\(s\) map a data cluster another guest range owns \(0x30000–0x3ffff/);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: 3 * CS, length: CS }]);
    expect(r.status, r.stderr).toBe(4); // clean, but not its data: a range is named lost
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(readsBack(f, 0x22, CS, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('both entries carry COPIED: which owns the cluster cannot be told, both ranges are named', () => {
    const { f, l2 } = image('both-copied');
    patchU64(f, l2 + 3 * 8, readU64(f, l2));
    const r = repairAll(f);
    expect(r.stderr).toMatch(/cannot tell which range owns it, so every range that maps it is named/);
    expect(r.out['guest-ranges-lost']).toEqual([
      { start: 0, length: CS },
      { start: 3 * CS, length: CS },
    ]);
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});
