// `lab --qemu` end to end: QEMU runs a workload under blklogwrites, the lab replays its log. The
// real run judges clean; both negative controls (the log without flushes, QEMU with
// cache.no-flush=on) must be caught, with a failing state printed.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuCheckHuman, run, tempDir } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const lab = (...args: string[]) => run('node', [BIN, 'lab', '--qemu', '--workload', 'alloc-l2', ...args]);
const t = tempDir('q2d-qemulab-test-');
afterAll(t.cleanup);

/** The table row of `name`: log entries, flushes, states tried, planned, corrupt, mismatches, leaky. */
const tableRow = (out: string, name: string): number[] | undefined => {
  const m = new RegExp(`^${name}\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)(?:/(\\d+))?\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s`, 'm').exec(
    out,
  );
  return m ? [m[1], m[2], m[3], m[4] ?? m[3], m[5], m[6], m[7]].map(Number) : undefined;
};

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

  it('compressed writes and qemu-img commit (into the logged base) are logged and judged: no crash state fails', () => {
    const r = run('node', [
      BIN,
      'lab',
      '--qemu',
      '--workload',
      'compressed-writes',
      'commit',
      '--budget',
      '20',
      '--subsets',
      '6',
      '--torn',
      '2',
      '--work-dir',
      t.dir,
    ]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const name of ['compressed-writes', 'commit']) {
      const row = tableRow(r.stdout, name);
      expect(row, `${name}\n${r.stdout}`).toBeDefined();
      const [entries, flushes, tried, planned, corrupt, mismatches] = row!;
      expect(entries, name).toBeGreaterThan(15);
      expect(flushes, name).toBeGreaterThan(3);
      expect(planned, name).toBeGreaterThan(40);
      expect(tried, name).toBeGreaterThan(0);
      expect([corrupt, mismatches], name).toEqual([0, 0]);
    }
    // What QEMU made: compressed clusters in the first image, the overlay's data committed into the base.
    const c = qemuCheckHuman(join(t.dir, 'compressed-writes', 'disk.qcow2'));
    expect(c.status, c.stdout).toBe(0);
    expect(c.stdout).toMatch(/[1-9]\d*\.\d+% compressed clusters/);
    const base = join(t.dir, 'commit', 'disk.qcow2');
    const read = run('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'read -P 0xe3 1M 192k',
      '-c',
      'read -P 0xe2 4k 4k',
      '-c',
      'read -P 0xe5 8k 4k',
      '-c',
      'read -P 0xe4 4092k 8k',
      base,
    ]);
    expect(read.stdout).not.toMatch(/fail|mismatch/i);
    expect(qemuCheckHuman(base).status).toBe(0);
  });

  it('negative control drop-flushes catches compressed writes and commit too', () => {
    const r = run('node', [
      BIN,
      'lab',
      '--qemu',
      '--workload',
      'compressed-writes',
      'commit',
      '--control',
      'drop-flushes',
      '--budget',
      '20',
      '--subsets',
      '30',
      '--torn',
      '2',
    ]);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    for (const name of ['compressed-writes', 'commit']) {
      const row = tableRow(r.stdout, name);
      expect(row, `${name}\n${r.stdout}`).toBeDefined();
      expect(row![1], name).toBe(0);
      expect(row![4]! + row![5]!, `${name}\n${r.stdout}`).toBeGreaterThan(0);
    }
  });

  it('refuses an unknown workload or control in one line', () => {
    const r = run('node', [BIN, 'lab', '--qemu', '--workload', 'nope']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown QEMU workload 'nope'/);
    const c = run('node', [BIN, 'lab', '--qemu', '--control', 'maybe']);
    expect(c.status).toBe(1);
    expect(c.stderr.trim().split('\n')).toHaveLength(1);
  });
});
