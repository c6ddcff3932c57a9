// `lab --qemu` end to end: QEMU runs a workload under blklogwrites, the lab replays its log. The
// real run judges clean; both negative controls (the log without flushes, QEMU with
// cache.no-flush=on) must be caught, with a failing state printed.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const lab = (...args: string[]) => run('node', [BIN, 'lab', '--qemu', '--workload', 'alloc-l2', ...args]);

describe('lab --qemu', () => {
  it('allocating writes across L2 tables: no crash state fails', () => {
    const r = lab('--budget', '8', '--subsets', '10', '--torn', '4');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/workload\s+log entries\s+flushes\s+states\s+corrupt\s+data mismatches\s+leaky/);
    const row = /^alloc-l2\s+(\d+)\s+(\d+)\s+(\d+)(?:\/(\d+))?\s+0\s+0\s+\d+/m.exec(r.stdout);
    expect(row, r.stdout).not.toBeNull();
    // QEMU flushes on its own between dependent metadata writes: far more than the guest's one.
    expect(Number(row![2])).toBeGreaterThan(5);
    // States planned (how many the budget lets us judge depends on the machine's load, not asserted).
    expect(Number(row![4] ?? row![3])).toBeGreaterThan(20);
    expect(Number(row![3])).toBeGreaterThan(0);
  });

  for (const control of ['drop-flushes', 'no-flush']) {
    it(`negative control ${control}: caught, exit 1, a failing state and its reproducer printed`, () => {
      const r = lab('--control', control, '--budget', '10', '--subsets', '60', '--torn', '4');
      expect(r.status, r.stdout + r.stderr).toBe(1);
      expect(r.stdout).toMatch(new RegExp(`negative control: ${control}`));
      expect(r.stdout).toMatch(/^alloc-l2\s+\d+\s+0\s+\d+(?:\/\d+)?\s+[1-9]\d*\s/m);
      expect(r.stdout).toMatch(/FAILED state: nothing durable; in flight and landed: /);
      expect(r.stdout).toMatch(
        /minimal: nothing durable; in flight and landed: [\d, -]+\n\s+#\d+ write \d+ bytes at 0x/,
      );
    });
  }

  it('refuses an unknown workload or control in one line', () => {
    const r = run('node', [BIN, 'lab', '--qemu', '--workload', 'nope']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown QEMU workload 'nope'/);
    const c = run('node', [BIN, 'lab', '--qemu', '--control', 'maybe']);
    expect(c.status).toBe(1);
    expect(c.stderr.trim().split('\n')).toHaveLength(1);
  });
});
