// `lab --inject` / `lab --qemu --inject` on a small fixed slice (the full matrix is the CLI's): an
// EIO once after a named event, the workload goes on, the final image and every crash state of the
// log judged. QEMU 7.2's qcow2 driver backs its allocations out; so does our writer, under lazy
// refcounts too (where a failed allocating write used to free clusters allocated earlier).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const lab = (...args: string[]) => run('node', [BIN, 'lab', '--inject', '--subsets', '5', '--torn', '2', ...args]);
const row = (out: string, workload: string, event: string) =>
  new RegExp(
    `^${workload}\\s+${event}\\s+(-?\\d+)\\s+(\\d+)\\s+(\\d+)(?:/\\d+)?\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(.+)$`,
    'm',
  ).exec(out);

describe('lab --qemu --inject', () => {
  it("QEMU's allocation error paths (L2 update, L2 allocation) back out: no state fails, the final image is clean", () => {
    const r = lab(
      '--qemu',
      '--workload',
      'alloc-l2',
      '--event',
      'l2_update',
      'l2_alloc_write',
      'l1_grow_write_table',
      '--budget',
      '12',
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /workload\s+event\s+step\s+log entries\s+states\s+corrupt\s+mismatches\s+leaky\s+final image/,
    );
    for (const ev of ['l2_update', 'l2_alloc_write']) {
      const m = row(r.stdout, 'alloc-l2', ev);
      expect(m, `${ev}\n${r.stdout}`).not.toBeNull();
      expect(m![1]).toBe('0'); // the first write hits it
      expect(Number(m![3])).toBeGreaterThan(0);
      expect([m![4], m![5], m![7]]).toEqual(['0', '0', 'clean']);
    }
    // A workload that never grows its L1 table never reaches the event: no row.
    expect(r.stdout).not.toMatch(/^alloc-l2\s+l1_grow_write_table/m);
    expect(r.stdout).toMatch(/^2 workload x event pairs reached/m);
  });

  it('a failed compressed write leaves its L2 entry pointing at data never written: the guest cluster no longer reads', () => {
    // QEMU 7.2 sets the L2 entry (in its cache) before it writes the compressed data and does not
    // take it back when that write fails; the entry reaches the disk with the next flush.
    const r = lab(
      '--qemu',
      '--workload',
      'compressed-writes',
      '--event',
      'l2_update_compressed',
      'cluster_alloc_bytes',
      '--budget',
      '12',
    );
    expect(r.status, r.stdout + r.stderr).toBe(1);
    const bad = row(r.stdout, 'compressed-writes', 'l2_update_compressed');
    expect(bad, r.stdout).not.toBeNull();
    expect(bad![1]).toBe('0');
    expect(Number(bad![3])).toBeGreaterThan(0);
    expect(bad![4]).toBe('0'); // no metadata corruption: qemu-img check calls it clean
    expect(Number(bad![5])).toBeGreaterThan(0);
    expect(bad![7]).toBe('UNREADABLE');
    expect(r.stdout).toMatch(/guest read at 0x0 failed: compressed cluster does not decompress/);
    expect(r.stdout).toMatch(/minimal: durable [\d, -]+; in flight and landed: /);
    // The same workload with the error one allocation step earlier backs out: nothing was set yet.
    const ok = row(r.stdout, 'compressed-writes', 'cluster_alloc_bytes');
    expect(ok, r.stdout).not.toBeNull();
    expect([ok![4], ok![5], ok![7]]).toEqual(['0', '0', 'clean']);
  });

  it('qemu-img commit into a base under blkdebug: the error paths back out', () => {
    const r = lab('--qemu', '--workload', 'commit', '--event', 'l2_update', 'l2_alloc_write', '--budget', '12');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const ev of ['l2_update', 'l2_alloc_write']) {
      const m = row(r.stdout, 'commit', ev);
      expect(m, `${ev}\n${r.stdout}`).not.toBeNull();
      expect(m![1]).toBe('0'); // the commit step fails
      expect(Number(m![2])).toBeGreaterThan(0);
      expect(Number(m![3])).toBeGreaterThan(0);
      expect([m![4], m![5]]).toEqual(['0', '0']);
      expect(m![7]).toMatch(/^(clean|\d+ leaked)$/);
    }
  });

  it('refuses an unknown event in one line', () => {
    const r = run('node', [BIN, 'lab', '--qemu', '--inject', '--event', 'l2_alloc.write']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown event 'l2_alloc\.write'/);
  });
});

describe('lab --inject (our writer)', () => {
  it('an EIO after the L2 update or the COW write is backed out: no state fails', () => {
    const r = lab('--workload', 'allocate', '--event', 'l2_update', 'cow_write', '--budget', '10');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const ev of ['l2_update', 'cow_write']) {
      const m = row(r.stdout, 'allocate', ev);
      expect(m, `${ev}\n${r.stdout}`).not.toBeNull();
      expect([m![4], m![5]]).toEqual(['0', '0']);
      expect(m![7]).toMatch(/^(clean|\d+ leaked)$/);
    }
  });

  it('under lazy refcounts a failed allocating write backs out only its own clusters: the pair that found the bug is clean', () => {
    // The data write failed, or a later write failed after freeing a cluster: backing out used to
    // re-read refcounts that lag behind the references, so clusters of earlier writes were reused.
    const r = lab('--workload', 'lazy-refcounts', '--event', 'write_aio', 'cluster_free', '--budget', '10');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const ev of ['write_aio', 'cluster_free']) {
      const m = row(r.stdout, 'lazy-refcounts', ev);
      expect(m, `${ev}\n${r.stdout}`).not.toBeNull();
      expect(Number(m![3])).toBeGreaterThan(0);
      expect([m![4], m![5], m![7]], `${ev}\n${r.stdout}`).toEqual(['0', '0', 'clean']);
    }
    expect(r.stdout).not.toMatch(/refcount=\d+ references?=\d+/);
  });
});
