// The chain opener and the CLI around it: QEMU's path resolution (checked through the file names
// qemu-img map prints), backing formats from the header or probed, cycles, depth, missing files.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openChain } from '../../engine/image/backing-chain.js';
import { resolveRelativeTo } from '../../engine/image/paths.js';
import { MAX_BACKING_CHAIN_DEPTH } from '../../engine/format/constants.js';
import { createQcow2, qemuImg, qemuIo, run, sha256, tempDir } from '../helpers/qemu.js';
import { dropBackingFormat } from './images.js';

const BIN = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const ours = (args: string[], cwd: string) => run('node', [BIN, ...args], { cwd });

describe('backing chains', () => {
  it("resolves names as QEMU's path_combine does", () => {
    expect(resolveRelativeTo('top.qcow2', 'base.qcow2')).toBe('base.qcow2');
    expect(resolveRelativeTo('d/top.qcow2', 'base.qcow2')).toBe('d/base.qcow2');
    expect(resolveRelativeTo('/x/y/top.qcow2', '../b/base.qcow2')).toBe('/x/y/../b/base.qcow2');
    expect(resolveRelativeTo('/x/top.qcow2', '/abs/base')).toBe('/abs/base');
    expect(resolveRelativeTo('d/top.qcow2', 'nbd:localhost:10809')).toBe('nbd:localhost:10809');
    expect(resolveRelativeTo('file:d/top.qcow2', 'b.qcow2')).toBe('file:d/b.qcow2');
  });

  it('relative names from another working directory: map and export match qemu-img run from there', () => {
    const t = tempDir();
    try {
      mkdirSync(join(t.dir, 'a'));
      mkdirSync(join(t.dir, 'b'));
      const base = join(t.dir, 'b', 'base.qcow2');
      createQcow2(base, '2M', { cluster_size: 4096 });
      qemuIo(base, ['write -P 0x11 0 256k']);
      const top = join(t.dir, 'a', 'top.qcow2');
      createQcow2(top, '2M', {}, { file: '../b/base.qcow2', format: 'qcow2' });
      qemuIo(top, ['write -P 0x22 64k 4k']);
      for (const args of [
        ['map', 'a/top.qcow2'],
        ['map', '--output=json', 'a/top.qcow2'],
      ]) {
        const q = run('qemu-img', args, { cwd: t.dir });
        const o = ours(args, t.dir);
        expect(o.stderr).toBe('');
        expect(o.stdout).toBe(q.stdout);
      }
      expect(ours(['map', 'a/top.qcow2'], t.dir).stdout).toContain('a/../b/base.qcow2');
      expect(ours(['export', 'a/top.qcow2', 'o.raw'], t.dir).status).toBe(0);
      run('qemu-img', ['convert', '-O', 'raw', 'a/top.qcow2', 'q.raw'], { cwd: t.dir });
      expect(readFileSync(join(t.dir, 'o.raw')).equals(readFileSync(join(t.dir, 'q.raw')))).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it('honours the backing format of the header: a qcow2 file read as raw when the overlay says raw', async () => {
    const t = tempDir();
    try {
      const base = join(t.dir, 'base.qcow2');
      createQcow2(base, '1M', {});
      qemuIo(base, ['write -P 0x33 0 64k']);
      const top = join(t.dir, 'top.qcow2');
      createQcow2(top, '1M', {}, { file: 'base.qcow2', format: 'raw' });
      const chain = await openChain(top);
      expect(chain.layers.map((l) => [l.format, l.formatSource])).toEqual([
        ['qcow2', 'probed'],
        ['raw', 'header'],
      ]);
      await chain.close();
      const ex = ours(['export', top, join(t.dir, 'o.raw')], t.dir);
      expect(ex.stderr).toBe('');
      expect(ex.status).toBe(0);
      qemuImg('convert', '-O', 'raw', top, join(t.dir, 'q.raw'));
      const o = readFileSync(join(t.dir, 'o.raw'));
      expect(o.equals(readFileSync(join(t.dir, 'q.raw')))).toBe(true);
      expect(o.readUInt32BE(0)).toBe(0x514649fb); // the base's header, as raw guest data
      expect(ours(['map', '--output=json', top], t.dir).stdout).toBe(qemuImg('map', '--output=json', top));
    } finally {
      t.cleanup();
    }
  });

  it('probes a backing file without a format extension: raw and qcow2', async () => {
    const t = tempDir();
    try {
      const raw = join(t.dir, 'base.raw');
      qemuImg('create', '-q', '-f', 'raw', raw, '1M');
      qemuIo(raw, ['write -P 0x44 0 8k'], { format: 'raw' });
      const top = join(t.dir, 'top.qcow2');
      createQcow2(top, '1M', {}, { file: 'base.raw', format: 'raw' });
      dropBackingFormat(top);
      const chain = await openChain(top);
      expect(chain.layers[1]).toMatchObject({
        format: 'raw',
        formatSource: 'probed',
        filename: join(t.dir, 'base.raw'),
      });
      await chain.close();
      expect(ours(['map', '--output=json', top], t.dir).stdout).toBe(qemuImg('map', '--output=json', top));
    } finally {
      t.cleanup();
    }
  });

  it(`accepts ${MAX_BACKING_CHAIN_DEPTH} layers and refuses one more, in one line`, async () => {
    const t = tempDir();
    try {
      let prev = join(t.dir, 'l0.qcow2');
      createQcow2(prev, '1M', { cluster_size: 4096 });
      qemuIo(prev, ['write -P 0x10 0 4k']);
      for (let i = 1; i <= MAX_BACKING_CHAIN_DEPTH; i++) {
        const f = join(t.dir, `l${i}.qcow2`);
        createQcow2(f, '1M', { cluster_size: 4096 }, { file: `l${i - 1}.qcow2`, format: 'qcow2' });
        qemuIo(f, [`write -P 0x${(0x10 + i).toString(16)} ${i * 8}k 4k`]);
        prev = f;
      }
      const deepest = join(t.dir, `l${MAX_BACKING_CHAIN_DEPTH - 1}.qcow2`);
      const chain = await openChain(deepest);
      expect(chain.layers).toHaveLength(MAX_BACKING_CHAIN_DEPTH);
      await chain.close();
      expect(ours(['map', '--output=json', deepest], t.dir).stdout).toBe(qemuImg('map', '--output=json', deepest));
      const r = ours(['export', prev, join(t.dir, 'o.raw')], t.dir);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /^qcow2-doctor: Backing chain too deep: '.*l0\.qcow2' would be layer 17, at most 16 are accepted\n$/,
      );
    } finally {
      t.cleanup();
    }
  });

  it('refuses a cycle in one line, without touching the files', () => {
    const t = tempDir();
    try {
      const a = join(t.dir, 'a.qcow2');
      const b = join(t.dir, 'b.qcow2');
      createQcow2(a, '1M', {});
      createQcow2(b, '1M', {}, { file: 'a.qcow2', format: 'qcow2' });
      qemuImg('rebase', '-u', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', a);
      const before = [sha256(a), sha256(b)];
      for (const cmd of [
        ['map', b],
        ['export', b, join(t.dir, 'o.raw')],
      ]) {
        const r = ours(cmd, t.dir);
        expect(r.status).toBe(1);
        expect(r.stderr).toBe(
          `qcow2-doctor: Backing file '${b}' creates an infinite loop (it is layer 0 of the chain)\n`,
        );
      }
      expect([sha256(a), sha256(b)]).toEqual(before);
    } finally {
      t.cleanup();
    }
  });

  it('missing backing file and unsupported formats: one line, exit 1', () => {
    const t = tempDir();
    try {
      const top = join(t.dir, 'top.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', top, '1M');
      const r = ours(['map', top], t.dir);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        `qcow2-doctor: Could not open backing file: Could not open '${join(t.dir, 'gone.qcow2')}': No such file or directory\n`,
      );
      const vmdk = join(t.dir, 'v.img');
      writeFileSync(vmdk, Buffer.concat([Buffer.from('KDMV'), Buffer.alloc(508)]));
      const top2 = join(t.dir, 'top2.qcow2');
      createQcow2(top2, '1M', {}, { file: 'v.img', format: 'raw' });
      dropBackingFormat(top2);
      const r2 = ours(['export', top2, join(t.dir, 'o.raw')], t.dir);
      expect(r2.status).toBe(1);
      expect(r2.stderr).toMatch(
        /^qcow2-doctor: Could not open '.*v\.img': image is in vmdk format, which is not supported \(qcow2 and raw are\)\n$/,
      );
      const r3 = ours(['map', join(t.dir, 'nope.qcow2')], t.dir);
      expect(r3.stderr).toBe(
        `qcow2-doctor: Could not open '${join(t.dir, 'nope.qcow2')}': No such file or directory\n`,
      );
    } finally {
      t.cleanup();
    }
  });

  it('finds an external data file named relative to the image from any working directory', async () => {
    const t = tempDir();
    try {
      mkdirSync(join(t.dir, 'img'));
      // Created from inside img/, so the recorded name is relative ("d.raw").
      run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'data_file=d.raw', 'x.qcow2', '1M'], {
        cwd: join(t.dir, 'img'),
      });
      run('qemu-io', ['-c', 'write -P 0x66 0 64k', 'x.qcow2'], { cwd: join(t.dir, 'img') });
      const chain = await openChain(join(t.dir, 'img', 'x.qcow2'));
      expect(chain.top.dataFile?.filename).toBe(join(t.dir, 'img', 'd.raw'));
      await chain.close();
      const r = ours(['export', 'img/x.qcow2', 'o.raw'], t.dir);
      expect(r.status).toBe(0);
      const o = readFileSync(join(t.dir, 'o.raw'));
      expect(o.length).toBe(1024 * 1024);
      expect(o.subarray(0, 65536).every((b) => b === 0x66)).toBe(true);
      expect(o.subarray(65536).every((b) => b === 0)).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});
