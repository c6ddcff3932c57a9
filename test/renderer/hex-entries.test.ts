// The hex view names the table entry under the cursor; checked on a real image made by qemu-img,
// against qemu-img map's own host offsets.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, qemuIo, readBytes, readU64, run, tempDir } from '../helpers/qemu.js';
import { entryAt } from '../../renderer/src/lib/hex-entries.js';
import { HostRole } from '../../engine/contract/roles.js';

const t = tempDir('q2d-hex-');
afterAll(t.cleanup);
const CS = 65536;

describe('hex view entries', () => {
  const f = join(t.dir, 'a.qcow2');
  createQcow2(f, '64M');
  qemuIo(f, ['write -P 0x5a 0x110000 64k', 'write -z 0x120000 64k']);
  const l1 = Number(readU64(f, 40));
  const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', f]).stdout) as Array<{
    start: number;
    data: boolean;
    offset?: number;
  }>;
  const host = map.find((m) => m.start === 0x110000 && m.data)!.offset!;

  it('L2[17] → guest 0x110000, at the host offset qemu-img map gives', () => {
    const page = readBytes(f, l2, 4096);
    const ctx = {
      role: HostRole.L2,
      clusterOffset: l2,
      clusterSize: CS,
      extendedL2: false,
      refcountBits: 16,
      parentIndex: 0,
    };
    const e = entryAt(ctx, l2 + 17 * 8 + 5, page, l2)!;
    expect(e).toEqual({
      start: l2 + 17 * 8,
      length: 8,
      label: `L2[17] → guest 0x110000 · host 0x${host.toString(16)}`,
    });
    expect(entryAt(ctx, l2 + 18 * 8, page, l2)!.label).toBe('L2[18] → guest 0x120000 · reads as zeros');
    expect(entryAt(ctx, l2 + 19 * 8, page, l2)!.label).toBe('L2[19] → guest 0x130000 · unallocated');
    expect(entryAt(ctx, l2 + CS, page, l2)).toBeNull();
  });

  it('L1[0] → the L2 table; refcount table and block entries', () => {
    const page = readBytes(f, l1, 4096);
    const e = entryAt(
      { role: HostRole.L1, clusterOffset: l1, clusterSize: CS, extendedL2: false, refcountBits: 16 },
      l1 + 2,
      page,
      l1,
    )!;
    expect(e.label).toBe(`L1[0] → L2 table 0x${l2.toString(16)} · guest 0x0…`);
    const rt = Number(readU64(f, 48));
    const rb = Number(readU64(f, rt) & 0x00fffffffffffe00n);
    const rtPage = readBytes(f, rt, 4096);
    expect(
      entryAt(
        { role: HostRole.RefcountTable, clusterOffset: rt, clusterSize: CS, extendedL2: false, refcountBits: 16 },
        rt,
        rtPage,
        rt,
      )!.label,
    ).toBe(`refcount table[0] → refcount block 0x${rb.toString(16)}`);
    const rbPage = readBytes(f, rb, 4096);
    const hostCluster = host / CS;
    const ctx = {
      role: HostRole.RefcountBlock,
      clusterOffset: rb,
      clusterSize: CS,
      extendedL2: false,
      refcountBits: 16,
      parentIndex: 0,
    };
    expect(entryAt(ctx, rb + hostCluster * 2 + 1, rbPage, rb)).toEqual({
      start: rb + hostCluster * 2,
      length: 2,
      label: `refcount[${hostCluster}] = 1 (cluster ${hostCluster})`,
    });
  });
});
