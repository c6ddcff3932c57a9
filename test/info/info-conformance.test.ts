// `info` against `qemu-img info` (7.2) on real images: JSON and human output must be identical,
// byte for byte (key order, indentation, sizes, dates), for every kind of image we read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  createQcow2,
  patchU32,
  patchU64,
  qemuImg,
  qemuIo,
  readU64,
  run,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';
import { createAes, createLuks, extensionOffsets, infoBoth } from './helpers.js';

const t = tempDir('q2d-info-');
afterAll(t.cleanup);
const f = (name: string): string => join(t.dir, name);

/** name → how to make it. Small images: the point is the metadata. */
const IMAGES: Record<string, () => void> = {
  'v3-default.qcow2': () => {
    createQcow2(f('v3-default.qcow2'), '64M');
    qemuIo(f('v3-default.qcow2'), ['write -P 0x11 0 192k', 'write -z 1M 64k']);
  },
  'v2.qcow2': () => {
    createQcow2(f('v2.qcow2'), '1G', { compat: '0.10' });
    qemuIo(f('v2.qcow2'), ['write -P 1 0 64k']);
    qemuImg('snapshot', '-c', 'before', f('v2.qcow2'));
  },
  'refcount1.qcow2': () => createQcow2(f('refcount1.qcow2'), '8M', { refcount_bits: 1 }),
  'refcount2.qcow2': () => createQcow2(f('refcount2.qcow2'), '8M', { refcount_bits: 2 }),
  'refcount4.qcow2': () => createQcow2(f('refcount4.qcow2'), '8M', { refcount_bits: 4 }),
  'refcount8.qcow2': () => createQcow2(f('refcount8.qcow2'), '8M', { refcount_bits: 8 }),
  'refcount32.qcow2': () => createQcow2(f('refcount32.qcow2'), '8M', { refcount_bits: 32 }),
  'refcount64.qcow2': () => {
    createQcow2(f('refcount64.qcow2'), '8M', { refcount_bits: 64 });
    qemuIo(f('refcount64.qcow2'), ['write -P 2 0 128k']);
  },
  'extl2.qcow2': () => {
    createQcow2(f('extl2.qcow2'), '32M', { extended_l2: true, cluster_size: '128k' });
    qemuIo(f('extl2.qcow2'), ['write -P 3 4k 4k']);
  },
  'zstd.qcow2': () => {
    createQcow2(f('zstd.qcow2'), '16M', { compression_type: 'zstd' });
    qemuIo(f('zstd.qcow2'), ['write -c -P 4 0 64k']);
  },
  'c512.qcow2': () => {
    createQcow2(f('c512.qcow2'), '4M', { cluster_size: 512 });
    qemuIo(f('c512.qcow2'), ['write -P 5 0 16k']);
  },
  'c2m.qcow2': () => createQcow2(f('c2m.qcow2'), '64M', { cluster_size: '2M' }),
  'lazy.qcow2': () => createQcow2(f('lazy.qcow2'), '8M', { lazy_refcounts: true }),
  'snapshots.qcow2': () => {
    const p = f('snapshots.qcow2');
    createQcow2(p, '32M');
    qemuIo(p, ['write -P 6 0 64k']);
    qemuImg('snapshot', '-c', 'first', p);
    qemuIo(p, ['write -P 7 0 64k']);
    qemuImg('snapshot', '-c', 'a-rather-long-snapshot-name', p);
    qemuImg('snapshot', '-c', 'café ☃ 𝄞', p);
  },
  'bitmaps.qcow2': () => {
    const p = f('bitmaps.qcow2');
    createQcow2(p, '64M');
    qemuImg('bitmap', '--add', p, 'b0');
    qemuImg('bitmap', '--add', '-g', '128k', p, 'b1');
    qemuImg('bitmap', '--add', '--disable', p, 'b2');
    qemuIo(p, ['write -P 8 0 1M']); // tracked by the enabled bitmaps, stored on close
  },
  'escapes.qcow2': () => {
    // Quote, backslash, tab and a control character; non-ASCII in a bitmap name (\uXXXX in JSON).
    createQcow2(f('escapes.qcow2'), '8M');
    qemuImg('snapshot', '-c', 'a"b\\c\td\u0001e', f('escapes.qcow2'));
    qemuImg('bitmap', '--add', f('escapes.qcow2'), 'bé€𝄞');
  },
  'datafile.qcow2': () => {
    createQcow2(f('datafile.qcow2'), '8M', { data_file: f('datafile.raw'), data_file_raw: true });
    qemuIo(f('datafile.qcow2'), ['write -P 9 0 1M']);
  },
  'datafile-notraw.qcow2': () => createQcow2(f('datafile-notraw.qcow2'), '8M', { data_file: f('datafile-notraw.raw') }),
  'luks.qcow2': () => createLuks(f('luks.qcow2'), '16M'),
  'luks-essiv.qcow2': () =>
    createLuks(f('luks-essiv.qcow2'), '16M', [
      'encrypt.cipher-alg=aes-128',
      'encrypt.cipher-mode=cbc',
      'encrypt.ivgen-alg=essiv',
      'encrypt.ivgen-hash-alg=sha256',
      'encrypt.hash-alg=sha1',
    ]),
  'aes.qcow2': () => createAes(f('aes.qcow2'), '16M'),
  'aes-v2.qcow2': () =>
    qemuImg(
      'create',
      '-q',
      '-f',
      'qcow2',
      '--object',
      'secret,id=s0,data=pw',
      '-o',
      'compat=0.10,encrypt.format=aes,encrypt.key-secret=s0',
      f('aes-v2.qcow2'),
      '16M',
    ),
  'header-length-120.qcow2': () => {
    // 8 bytes of unknown header fields: the extensions move 8 bytes further.
    const p = f('header-length-120.qcow2');
    createQcow2(p, '8M');
    const d = readFileSync(p);
    const moved = Buffer.concat([d.subarray(0, 112), Buffer.alloc(8, 0xaa), d.subarray(112, 4096)]);
    moved.writeUInt32BE(120, 100);
    writeBytes(p, 0, moved);
  },
  'backed.qcow2': () => {
    createQcow2(f('backing-base.qcow2'), '16M');
    createQcow2(f('backed.qcow2'), '16M', {}, { file: 'backing-base.qcow2', format: 'qcow2' });
  },
  'backed-abs.qcow2': () => {
    createQcow2(f('backing-base2.qcow2'), '16M');
    createQcow2(f('backed-abs.qcow2'), '16M', {}, { file: f('backing-base2.qcow2'), format: 'qcow2' });
  },
};

beforeAll(() => {
  for (const make of Object.values(IMAGES)) make();
});

describe('info output equals qemu-img info', () => {
  for (const name of Object.keys(IMAGES)) {
    it(`${name}: JSON and human form`, async () => {
      for (const output of ['json', 'human'] as const) {
        const { qemu, ours } = await infoBoth(f(name), output);
        expect(ours).toBe(qemu);
      }
    });
  }

  it('dirty and corrupt bits: "dirty-flag", "corrupt" and "cleanly shut down: no"', async () => {
    const p = f('dirty.qcow2');
    createQcow2(p, '8M', { lazy_refcounts: true });
    patchU64(p, 72, 0x3n); // incompatible: dirty + corrupt
    for (const output of ['json', 'human'] as const) {
      const { qemu, ours } = await infoBoth(p, output);
      expect(ours).toBe(qemu);
    }
    expect((await infoBoth(p, 'human')).ours).toContain('cleanly shut down: no\n');
  });

  it('snapshot with VM state, a VM clock and no icount', async () => {
    const p = f('vmstate.qcow2');
    createQcow2(p, '8M');
    qemuImg('snapshot', '-c', 'withstate', p);
    const sn = Number(readU64(p, 64));
    patchU32(p, sn + 32, 0); // 32-bit field is superseded by the 64-bit one in extra data
    patchU64(p, sn + 40, 5n * 1024n * 1024n * 1024n + 12345n); // 64-bit VM state size
    patchU64(p, sn + 56, 0xffffffffffffffffn); // icount -1: not shown
    patchU64(p, sn + 24, 90061_123_456_789n); // 25:01:01.123 of guest time
    for (const output of ['json', 'human'] as const) {
      const { qemu, ours } = await infoBoth(p, output);
      expect(ours).toBe(qemu);
    }
    const json = JSON.parse((await infoBoth(p, 'json')).ours);
    expect(json.snapshots[0]['vm-state-size']).toBe(5 * 1024 ** 3 + 12345);
    expect(json.snapshots[0].icount).toBeUndefined();
  });

  it('v2 image whose backing format extension is gone: no backing-filename-format', async () => {
    createQcow2(f('probe-base.qcow2'), '8M');
    const p = f('probe-top.qcow2');
    createQcow2(p, '8M', { compat: '0.10' }, { file: 'probe-base.qcow2', format: 'qcow2' });
    const ext = extensionOffsets(p).get(0xe2792aca)!;
    patchU32(p, ext, 0); // the backing-format extension becomes the end marker
    const { qemu, ours } = await infoBoth(p, 'json');
    expect(ours).toBe(qemu);
    expect(ours).not.toContain('backing-filename-format');
  });

  it('--backing-chain with relative names, a probed qcow2 layer and a raw base (JSON and human)', async () => {
    const d = join(t.dir, 'chain');
    run('mkdir', ['-p', d]);
    qemuImg('create', '-q', '-f', 'raw', join(d, 'base.raw'), '8M');
    qemuIo(join(d, 'base.raw'), ['write -P 1 0 64k'], { format: 'raw' });
    createQcow2(join(d, 'mid.qcow2'), '8M', {}, { file: 'base.raw', format: 'raw' });
    createQcow2(join(d, 'top.qcow2'), '8M', {}, { file: 'mid.qcow2', format: 'qcow2' });
    for (const output of ['json', 'human'] as const) {
      const { qemu, ours } = await infoBoth('chain/top.qcow2', output, { chain: true, cwd: t.dir });
      expect(ours).toBe(qemu);
    }
    const layers = JSON.parse((await infoBoth('chain/top.qcow2', 'json', { chain: true, cwd: t.dir })).ours);
    expect(layers.map((l: { filename: string }) => l.filename)).toEqual([
      'chain/top.qcow2',
      'chain/mid.qcow2',
      'chain/base.raw',
    ]);
  });

  it('an unknown header extension is listed by us and ignored by QEMU', async () => {
    const p = f('unknown-ext.qcow2');
    createQcow2(p, '8M');
    const end = extensionOffsets(p).get(0)!;
    const ext = Buffer.alloc(24);
    ext.writeUInt32BE(0x12345678, 0);
    ext.writeUInt32BE(5, 4);
    ext.write('hello', 8, 'latin1');
    writeBytes(p, end, ext); // followed by zeros: the end marker
    const { qemu, ours } = await infoBoth(p, 'json');
    const q = JSON.parse(qemu);
    const o = JSON.parse(ours);
    expect(o['format-specific'].data['x-unknown-header-extensions']).toEqual([
      { type: '0x12345678', offset: end + 8, length: 5 },
    ]);
    delete o['format-specific'].data['x-unknown-header-extensions'];
    expect(o).toEqual(q);
    const human = (await infoBoth(p, 'human')).ours;
    expect(human).toContain('    x unknown header extensions:\n        [0]:\n');
    expect(human).toContain('            type: 0x12345678\n');
  });

  it('a file that is not qcow2 is reported as raw, as QEMU probes it', async () => {
    const p = f('plain.img');
    writeFileSync(p, Buffer.alloc(3 * 65536 + 100, 7)); // not a whole number of sectors
    for (const output of ['json', 'human'] as const) {
      const { qemu, ours } = await infoBoth(p, output);
      expect(ours).toBe(qemu);
    }
    expect(JSON.parse((await infoBoth(p, 'json')).ours)['virtual-size']).toBe(3 * 65536 + 512);
    expect(readFileSync(p).length).toBe(3 * 65536 + 100);
  });
});
