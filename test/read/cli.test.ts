// The `map` and `export` commands as a user runs them: output streams, exit codes, --snapshot,
// the human map's refusal of compressed clusters, and a snapshot whose disk size differs.
import { describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, run, sha256, tempDir } from '../helpers/qemu.js';

const BIN = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const ours = (...args: string[]) => run('node', [BIN, ...args]);

describe('map and export commands', () => {
  it('map (human) refuses compressed clusters after printing what precedes them, as qemu-img', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'c.qcow2');
      createQcow2(f, '4M', {});
      qemuIo(f, ['write -P 0x11 0 64k', 'write -c -P 0x22 1M 64k', 'write -P 0x33 2M 64k']);
      const q = run('qemu-img', ['map', f]);
      const o = ours('map', f);
      expect(q.status).toBe(1);
      expect(o.status).toBe(1);
      expect(o.stdout).toBe(q.stdout);
      expect(o.stderr).toBe(q.stderr.replace('qemu-img:', 'qcow2-doctor:'));
      expect(o.stderr).toBe('qcow2-doctor: File contains external, encrypted or compressed clusters.\n');
      const j = ours('map', '--output=json', f);
      expect(j.status).toBe(0);
      expect(j.stdout).toBe(qemuImg('map', '--output=json', f));
    } finally {
      t.cleanup();
    }
  });

  it('export: sparse output of the virtual size, --snapshot by name and ID, nothing on stdout', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 's.qcow2');
      createQcow2(f, '8M', {});
      qemuIo(f, ['write -P 0x41 0 1M']);
      qemuImg('snapshot', '-c', 'before', f);
      qemuIo(f, ['write -P 0x42 512k 1M', 'write -z 0 64k']);
      const before = sha256(f);
      const cur = join(t.dir, 'cur.raw');
      const r = ours('export', f, cur);
      expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(statSync(cur).size).toBe(8 * 1024 * 1024);
      // Only the written megabytes (minus the zeroed 64 KiB) are allocated.
      expect(statSync(cur).blocks * 512).toBeLessThan(2 * 1024 * 1024);
      for (const sel of ['before', '1']) {
        const out = join(t.dir, `snap-${sel}.raw`);
        expect(ours('export', '--snapshot', sel, f, out).status).toBe(0);
        const q = join(t.dir, `q-${sel}.raw`);
        qemuImg('convert', '-l', sel === '1' ? 'snapshot.id=1' : 'snapshot.name=before', '-O', 'raw', f, q);
        expect(readFileSync(out).equals(readFileSync(q))).toBe(true);
      }
      const bad = ours('export', '--snapshot', 'nope', f, join(t.dir, 'x.raw'));
      expect(bad.status).toBe(1);
      expect(bad.stderr).toBe(`qcow2-doctor: Can't find snapshot 'nope' in '${f}' (it has 1 snapshot)\n`);
      expect(sha256(f)).toBe(before);
    } finally {
      t.cleanup();
    }
  });

  it("export of a snapshot taken before a resize has the snapshot's own size (qemu-img convert -l uses the current one)", () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'r.qcow2');
      createQcow2(f, '2M', {});
      qemuIo(f, ['write -P 0x51 0 1M']);
      qemuImg('snapshot', '-c', 's', f);
      qemuImg('resize', '-q', f, '4M');
      qemuIo(f, ['write -P 0x52 3M 64k']);
      const out = join(t.dir, 'o.raw');
      expect(ours('export', '--snapshot', 's', f, out).status).toBe(0);
      const q = join(t.dir, 'q.raw');
      qemuImg('convert', '-l', 'snapshot.name=s', '-O', 'raw', f, q);
      const o = readFileSync(out);
      const qb = readFileSync(q);
      expect(o.length).toBe(2 * 1024 * 1024);
      expect(qb.length).toBe(4 * 1024 * 1024);
      expect(o.equals(qb.subarray(0, o.length))).toBe(true);
      expect(qb.subarray(o.length).every((b) => b === 0)).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it('export to a path that is not a regular file writes zeros densely (/dev/stdout through a pipe)', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'p.qcow2');
      createQcow2(f, '1M', { cluster_size: 4096 });
      qemuIo(f, ['write -P 0x61 8k 4k']);
      const r = run('sh', [
        '-c',
        `node ${BIN} export ${f} /dev/stdout | od -An -tx1 -v | tr -s ' \\n' '\\n\\n' | grep -c .`,
      ]);
      expect(r.stdout.trim()).toBe(String(1024 * 1024));
    } finally {
      t.cleanup();
    }
  });

  it('map streams many entries exactly as qemu-img, and stops quietly when the reader leaves (| head)', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'm.qcow2');
      createQcow2(f, '8M', { cluster_size: 512 });
      // 400 alternating allocated / unallocated clusters, then compressed ones.
      qemuIo(f, [
        ...Array.from({ length: 400 }, (_, i) => `write -P 0x${(0x10 + (i % 200)).toString(16)} ${i * 1024} 512`),
        'write -c -P 0x77 4M 4k',
      ]);
      for (const out of ['--output=json', '--output=human']) {
        const o = ours('map', out, f);
        const q = run('qemu-img', ['map', out, f]);
        expect(o.stdout).toBe(q.stdout);
        expect(o.status).toBe(q.status);
      }
      const r = run('sh', ['-c', `node ${BIN} map --output=json ${f} | head -1`]);
      expect(r.stdout.split('\n')[0]).toMatch(/^\[\{ "start": 0, "length": 512/);
      expect(r.stderr).toBe('');
    } finally {
      t.cleanup();
    }
  });

  it('export refuses to overwrite a file it reads (the image, a backing file, the data file)', () => {
    const t = tempDir();
    try {
      const base = join(t.dir, 'base.qcow2');
      createQcow2(base, '1M', { data_file: join(t.dir, 'base.data') });
      qemuIo(base, ['write -P 0x71 0 64k']);
      const top = join(t.dir, 'top.qcow2');
      createQcow2(top, '1M', {}, { file: 'base.qcow2', format: 'qcow2' });
      const sums = [top, base, join(t.dir, 'base.data')].map(sha256);
      for (const target of [top, base, join(t.dir, 'base.data'), join(t.dir, '.', 'top.qcow2')]) {
        const r = ours('export', top, target);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/^qcow2-doctor: refusing to export into '.*': it is '.*', which the export reads\n$/);
      }
      expect([top, base, join(t.dir, 'base.data')].map(sha256)).toEqual(sums);
    } finally {
      t.cleanup();
    }
  });

  it("an empty disk: map prints QEMU's zero-length entry, export an empty file", () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'empty.qcow2');
      createQcow2(f, 0, {});
      for (const out of ['--output=json', '--output=human'])
        expect(ours('map', out, f).stdout).toBe(run('qemu-img', ['map', out, f]).stdout);
      expect(ours('export', f, join(t.dir, 'e.raw')).status).toBe(0);
      expect(statSync(join(t.dir, 'e.raw')).size).toBe(0);
    } finally {
      t.cleanup();
    }
  });

  it("map of a huge sparse disk (8 TiB) equals qemu-img's", () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'huge.qcow2');
      createQcow2(f, '8T', {});
      qemuIo(f, ['write -P 0x11 3T 64k', 'write -z 5T 1M']);
      for (const out of ['--output=json', '--output=human']) {
        const o = ours('map', out, f);
        expect(o.status).toBe(0);
        expect(o.stdout).toBe(run('qemu-img', ['map', out, f]).stdout);
      }
    } finally {
      t.cleanup();
    }
  });
});
