// A fuzz finding (salvage-scan target): a header whose l1_size is QEMU's limit (0x400000 entries)
// and whose disk size is absurd, on a 5 KiB file. The L1 then runs past the end of the file, and each
// of its four million missing entries is a lost slot: salvage spread them into one push and died with
// "Maximum call stack size exceeded"; the guest view then looked each slot up in the whole list.
// Now the slots are appended one by one and looked up by index: salvage ends, naming the loss.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, patchU32, patchU64, qemuIo, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-truncated-l1-limit-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');

describe('an L1 table at the size limit cut by the end of the file', () => {
  it('salvage ends with the missing entries named lost, not a stack overflow', () => {
    const f = join(t.dir, 'disk.qcow2');
    createQcow2(f, '1M', { cluster_size: '512' });
    qemuIo(f, ['write -P 0x5a 0 4k']);
    patchU64(f, 24, 0x80000000000000n); // size
    patchU32(f, 36, 0x400000); // l1_size: QEMU's maximum
    const r = run('node', [CLI, 'salvage', f, join(t.dir, 'out.qcow2')]);
    expect(r.stderr).not.toMatch(/call stack/);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stdout + r.stderr).toMatch(
      /the file ends inside the active L1 table at 0x[0-9a-f]+ \(truncated\): the guest ranges of its \d+ missing entries are lost/,
    );
  }, 120_000);
});
