// Crash-state images sampled from the lab, judged independently by QEMU: qemu-img check must find
// no corruption in any of them (leaks are fine). Dirty images (lazy refcounts) are first opened
// read-write by qemu-io, which repairs them as QEMU does on open.
import { afterAll, describe, expect, it } from 'vitest';
import { basename } from 'node:path';
import { runCampaign } from '../../engine/lab/campaign.js';
import { qemuCheckHuman, readBytes, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-labdump-');
afterAll(t.cleanup);

describe('crash states judged by qemu-img check', () => {
  it('sampled crash-state images of every workload check without corruption', async () => {
    const reports = await runCampaign({
      ordering: 'ordered',
      seed: 7,
      subsetsPerEpoch: 4,
      tornPerEpoch: 2,
      continueEvery: 0,
      stride: 6,
      dumpDir: t.dir,
      dumpEvery: 1,
    });
    const files = reports.flatMap((r) => r.dumped);
    expect(files.length).toBeGreaterThan(100);
    const verdicts = new Map<string, number>();
    let copiedOnly = 0;
    for (const f of files) {
      expect(basename(f)).not.toMatch(/FAILED/);
      const dirty = (readBytes(f, 79, 1)[0]! & 1) === 1;
      if (dirty) {
        const r = run('qemu-io', ['-f', 'qcow2', '-c', 'read 0 512', f]);
        expect(r.status, `${f}: qemu-io repair-on-open`).toBe(0);
        expect(readBytes(f, 79, 1)[0]! & 1, `${f}: dirty bit cleared by QEMU`).toBe(0);
      }
      const c = qemuCheckHuman(f);
      verdicts.set(String(c.status), (verdicts.get(String(c.status)) ?? 0) + 1);
      if (c.status === 0 || c.status === 3) continue;
      // The one thing qemu-img counts that is not a corruption of data: a COPIED flag disagreeing
      // with a refcount while the cluster has one reference — snapshot create/delete/revert pass
      // through it (so does QEMU's own snapshot code). Nothing else may appear.
      expect(c.status, `${f}: ${c.stdout}${c.stderr}`).toBe(2);
      expect(basename(f), `${f}: ${c.stderr}`).toMatch(/^snapshots-/);
      const errors = c.stderr.split('\n').filter((l) => l.startsWith('ERROR'));
      expect(errors.length).toBeGreaterThan(0);
      for (const e of errors) expect(e, f).toMatch(/^ERROR OFLAG_COPIED (L2|data) cluster: .* refcount=(2|3|1)$/);
      copiedOnly++;
    }
    expect((verdicts.get('0') ?? 0) + (verdicts.get('3') ?? 0)).toBeGreaterThan(files.length * 0.8);
    expect(copiedOnly).toBeLessThan(files.length * 0.2);
  }, 600_000);
});
