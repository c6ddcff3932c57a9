// A zeroed L2 table that held a compressed entry whose host cluster other compressed streams still
// share: the cluster is only over-counted (not leaked), so neither the leaked-data nor the
// snapshot-share evidence saw the loss, and the repair exited clean while a guest cluster changed.
// The guest position of the lost stream cannot be told: the repair must say data was lost at
// unknown positions (exit 4, `guest-data-lost-unplaced`), never claim the image's data intact.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, qemuCheck, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';
import { caseFiles, readsBack } from '../helpers/guest-reads.js';

const t = tempDir('q2d-compressed-stream-lost-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
const fileIn = caseFiles(t.dir);
const CS = 4096;
const MIB2 = 2 * 1024 * 1024; // one 4 KiB-cluster L2 table maps 2 MiB

/** Two tiny compressed clusters packed into one host cluster, mapped by two L2 tables; the second table zeroed. */
function damaged(name: string): string {
  const f = fileIn(name);
  createQcow2(f, '8M', { cluster_size: CS });
  qemuIo(f, ['write -c -P 0x5a 0 4k', `write -c -P 0xa5 ${MIB2} 4k`]);
  const l1 = Number(readU64(f, 40));
  const l2a = Number(readU64(f, l1) & 0x00fffffffffffe00n);
  const l2b = Number(readU64(f, l1 + 8) & 0x00fffffffffffe00n);
  const ea = readU64(f, l2a);
  const eb = readU64(f, l2b);
  // Both entries compressed, their streams in the same host cluster (the premise of this class).
  expect((ea >> 62n) & 1n).toBe(1n);
  expect((eb >> 62n) & 1n).toBe(1n);
  const host = (e: bigint) => Number(e & 0x3ffffffffffffffn) >> 12; // 4 KiB clusters: offset in bits 0..57
  expect(host(ea)).toBe(host(eb));
  writeBytes(f, l2b, new Uint8Array(CS)); // the second L2 table zeroed
  return f;
}

describe('a compressed stream whose L2 table was zeroed, its host cluster shared', () => {
  for (const mode of ['leaks', 'all'] as const)
    it(`-r ${mode} names the data lost at unknown positions (exit 4), keeps the surviving stream`, () => {
      const f = damaged(`zeroed-${mode}`);
      expect(qemuCheck(f).status).toBe(3); // QEMU: one leaked use of the shared cluster
      const r = cli('check', '-r', mode, '--output=json', '--no-journal', f);
      expect(r.status, r.stderr).toBe(4);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(out['guest-data-lost-unplaced']).toEqual({ clusters: 1, bytes: CS });
      expect(r.stderr).toMatch(/1 compressed guest cluster\(s\) lost their L2 entry/);
      expect(qemuCheck(f).status).toBe(0);
      expect(readsBack(f, 0x5a, 0, CS)).toBe(true);
    });

  it('an intact image with shared compressed clusters claims nothing lost', () => {
    const f = fileIn('intact');
    createQcow2(f, '8M', { cluster_size: CS });
    qemuIo(f, ['write -c -P 0x5a 0 4k', `write -c -P 0xa5 ${MIB2} 4k`]);
    const r = cli('check', '-r', 'all', '--output=json', '--no-journal', f);
    expect(r.status, r.stderr).toBe(0);
    expect(readsBack(f, 0x5a, 0, CS) && readsBack(f, 0xa5, MIB2, CS)).toBe(true);
  });
});
