// `qcow2-doctor check` (built CLI) on an image whose active L1 table is zeroed: stdout is QEMU's
// summary byte for byte, then one separate paragraph about the lost tables; QEMU's exit code.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, qemuCheckHuman, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const tmp = tempDir('q2d-lost-cli-');
afterAll(() => tmp.cleanup());

describe('qcow2-doctor check with lost tables', () => {
  it("prints QEMU's summary, then the lost-table paragraph; exit code as QEMU's", () => {
    const f = join(tmp.dir, 'zeroed-l1.qcow2');
    createQcow2(f, '1G');
    qemuIo(f, ['write -P 0x61 0 2M', 'write -P 0x62 700M 1M']);
    writeBytes(f, Number(readU64(f, 40)), new Uint8Array(16));
    const q = qemuCheckHuman(f);
    const ours = run('node', ['bin/qcow2-doctor.cjs', 'check', f]);
    expect(ours.status).toBe(q.status);
    expect(ours.stdout.startsWith(q.stdout)).toBe(true);
    const extra = ours.stdout.slice(q.stdout.length);
    expect(extra).toMatch(/^\n2 lost L2 tables still map 3 MiB of data that nothing else refers to/);
    expect(extra).toContain('Do not repair leaks');
    expect(extra).toContain('qcow2-doctor check -r all');
    expect(extra).toContain('qcow2-doctor salvage');
  });

  it('prints nothing more for a clean image', () => {
    const f = join(tmp.dir, 'clean.qcow2');
    createQcow2(f, '1G');
    qemuIo(f, ['write -P 0x61 0 2M']);
    expect(run('node', ['bin/qcow2-doctor.cjs', 'check', f]).stdout).toBe(qemuCheckHuman(f).stdout);
  });
});
