// Salvage of an image with a snapshot whose active L1 table was zeroed: the snapshot's L1 still
// holds the active disk's L2 tables (their refcount counts the active share), so salvage puts them
// back at those slots, says so, and says "nothing lost" only because it is true.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-snapheld-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');

describe('salvage with a zeroed active L1 and a surviving snapshot', () => {
  it('re-links the active tables from the snapshot L1: every byte back at its place, exit 0', () => {
    const f = join(t.dir, 'disk.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -P 0x22 3M 8k']);
    qemuImg('snapshot', '-c', 's1', f);
    const l1 = Number(readU64(f, 40));
    const size = Number(readU64(f, 32) & 0xffffffffn);
    writeBytes(f, l1, new Uint8Array(size * 8));
    const out = join(t.dir, 'out.raw');
    const r = run('node', [CLI, 'salvage', f, out]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/from the snapshot's L1 table — snapshot 1's L1 holds it at slot 0/);
    const raw = readFileSync(out);
    expect(raw.subarray(0, 8192).every((b) => b === 0x11)).toBe(true);
    expect(raw.subarray(3 << 20, (3 << 20) + 8192).every((b) => b === 0x22)).toBe(true);
    expect(raw.subarray(8192, 3 << 20).every((b) => b === 0)).toBe(true);
  });
});
