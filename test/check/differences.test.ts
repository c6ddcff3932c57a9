// Where we differ from qemu-img check on purpose: it refuses to check an image whose backing file
// or external data file is missing; we check the image's own metadata and report the missing file.
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuCheckHuman, qemuIo, tempDir } from '../helpers/qemu.js';
import { ourCheck } from './harness.js';

const tmp = tempDir('q2d-diff-');
afterAll(() => tmp.cleanup());

describe('deliberate differences from qemu-img check', () => {
  it('checks an overlay whose backing file is missing and says it is missing', async () => {
    const base = join(tmp.dir, 'base.qcow2');
    const f = join(tmp.dir, 'overlay.qcow2');
    createQcow2(base, '64M');
    createQcow2(f, '64M', {}, { file: 'base.qcow2', format: 'qcow2' });
    qemuIo(f, ['write -P 3 0 64k']);
    rmSync(base);
    const q = qemuCheckHuman(f);
    expect(q.status).toBe(1);
    expect(q.stderr).toContain('Could not open backing file');
    const ours = await ourCheck(f);
    expect(ours.exit).toBe(0);
    expect(ours.result!.anomalies.map((a) => a.kind)).toEqual(['backing-file-missing']);
  });

  it('checks an image whose external data file is missing and says it is missing', async () => {
    const f = join(tmp.dir, 'df.qcow2');
    createQcow2(f, '64M', { data_file: join(tmp.dir, 'df.raw') });
    qemuIo(f, ['write -P 3 0 64k']);
    rmSync(join(tmp.dir, 'df.raw'));
    expect(qemuCheckHuman(f).status).toBe(1);
    const ours = await ourCheck(f);
    expect(ours.exit).toBe(0);
    expect(ours.result!.anomalies.map((a) => a.kind)).toEqual(['data-file-missing']);
  });
});
