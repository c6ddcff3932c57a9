// A flipped compressed bit on an empty L2 entry makes a compressed descriptor whose stream lies in the
// header: QEMU's check only sees the header's refcount too low (its repair raises it and calls the
// image clean), but every read of that guest cluster fails. `-r all` drops the garbage descriptor
// (the stream does not decode), names the guest range, and leaves an image QEMU reads whole.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, patchU64, qemuCheck, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';
import { readsBack, caseFiles } from '../helpers/guest-reads.js';

const t = tempDir('q2d-garbage-compressed-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const fileIn = caseFiles(t.dir);

const CS = 65536;
const COMPRESSED_AT_0 = 0x4000000000000000n;
const l2Of = (f: string): number => Number(readU64(f, Number(readU64(f, 40))) & 0x00fffffffffffe00n);

/** Reads the whole guest disk through QEMU; false when any read fails. */
const convertible = (f: string): boolean => run('qemu-img', ['convert', '-U', '-O', 'raw', f, `${f}.raw`]).status === 0;

function damaged(name: string, opts: Record<string, string | number | boolean> = {}): string {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: CS, ...opts });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 128k 64k']);
  const entrySize = opts.extended_l2 ? 16 : 8;
  patchU64(f, l2Of(f) + 5 * entrySize, COMPRESSED_AT_0); // guest 320 KiB: was unallocated
  expect(convertible(f)).toBe(false);
  return f;
}

describe('a compressed descriptor whose stream lies in the header', () => {
  it('-r all drops it, names its guest range, and the disk reads whole again', () => {
    const f = damaged('std');
    const r = run('node', [CLI, 'check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(r.stderr).toMatch(/compressed descriptor \(4000000000000000\) whose stream at 0x0 lies in the header/);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out['guest-ranges-lost']).toEqual([{ start: 5 * CS, length: CS }]);
    expect(r.status, r.stderr).toBe(4); // clean, but not its data: a range is named lost
    expect(convertible(f)).toBe(true);
    expect(readsBack(f, 0, 5 * CS, CS)).toBe(true);
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(readsBack(f, 0x22, 2 * CS, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('on an extended-L2 image too (the entry becomes unallocated)', () => {
    const f = damaged('xl2', { extended_l2: true });
    const r = run('node', [CLI, 'check', '-r', 'all', '--no-journal', '--output=json', f]);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out['guest-ranges-lost']).toEqual([{ start: 5 * CS, length: CS }]);
    expect(convertible(f)).toBe(true);
    expect(readsBack(f, 0x22, 2 * CS, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('--cautious refuses instead, and names the entry', () => {
    const f = damaged('cautious');
    const r = run('node', [CLI, 'check', '-r', 'all', '--cautious', '--no-journal', f]);
    expect(r.stderr).toMatch(/not repaired: L2 table at 0x[0-9a-f]+, entry 5 holds a compressed descriptor/);
    expect(convertible(f)).toBe(false);
  });
});
