// Damaged and hostile images: where `qemu-img info` refuses to open an image, `info` refuses too,
// with QEMU's reason, in one line that also names the field and the value; the CLI exits 1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectImageInfo, InfoOpenError } from '../../engine/image/info-file.js';
import { Qcow2FormatError } from '../../engine/base/errors.js';
import {
  createQcow2,
  patchU16,
  patchU32,
  patchU64,
  qemuImg,
  qemuIo,
  readU64,
  run,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';
import { createLuks, extensionOffsets, qemuRefusal } from './helpers.js';

const t = tempDir('q2d-hostile-');
afterAll(t.cleanup);
const base = (n: string): string => join(t.dir, `base-${n}.qcow2`);

type Patch = (file: string) => void;
const u8 =
  (off: number, v: number): Patch =>
  (p) =>
    writeBytes(p, off, Uint8Array.of(v));
const u32 =
  (off: number, v: number): Patch =>
  (p) =>
    patchU32(p, off, v);
const u64 =
  (off: number, v: bigint | number): Patch =>
  (p) =>
    patchU64(p, off, v);

let bm = { dir: 0, ext: 0, table0: 0 };
let luks = 0;
let snap = 0;
let plainEnd = 0;

beforeAll(() => {
  createQcow2(base('plain'), '64M');
  qemuIo(base('plain'), ['write -P 1 0 128k']);
  plainEnd = extensionOffsets(base('plain')).get(0)!;

  createQcow2(base('v2'), '64M', { compat: '0.10' }, undefined);

  createQcow2(base('snap'), '16M');
  qemuImg('snapshot', '-c', 's1', base('snap'));
  snap = Number(readU64(base('snap'), 64));

  createQcow2(base('backed'), '16M', {}, { file: base('plain'), format: 'qcow2' });

  const b = base('bitmaps');
  createQcow2(b, '64M');
  qemuImg('bitmap', '--add', b, 'b0');
  qemuImg('bitmap', '--add', '-g', '128k', b, 'b1');
  qemuIo(b, ['write 0 4M']);
  const ext = extensionOffsets(b).get(0x23852875)!;
  const dir = Number(readU64(b, ext + 8 + 16));
  bm = { ext, dir, table0: Number(readU64(b, dir)) };

  createLuks(base('luks'), '16M');
  luks = Number(readU64(base('luks'), extensionOffsets(base('luks')).get(0x0537be77)! + 8));
});

interface Case {
  name: string;
  from: string;
  patch: Patch[];
}

const CASES: Case[] = [
  { name: 'version 4', from: 'plain', patch: [u32(4, 4)] },
  { name: 'cluster_bits 30', from: 'plain', patch: [u32(20, 30)] },
  { name: 'cluster_bits 8', from: 'plain', patch: [u32(20, 8)] },
  { name: 'header_length 100', from: 'plain', patch: [u32(100, 100)] },
  { name: 'header_length beyond the cluster', from: 'plain', patch: [u32(100, 0x20000)] },
  { name: 'backing_file_offset beyond the cluster', from: 'plain', patch: [u64(8, 0x20000)] },
  { name: 'compression type 2', from: 'plain', patch: [u8(104, 2)] },
  { name: 'compression bit without type', from: 'plain', patch: [u64(72, 0x8)] },
  { name: 'unknown incompatible bit', from: 'plain', patch: [u64(72, 0x40)] },
  { name: 'refcount_order 7', from: 'plain', patch: [u32(96, 7)] },
  { name: 'extended L2 with 8 KiB clusters', from: 'plain', patch: [u32(20, 13), u64(72, 0x10)] },
  { name: 'no refcount table', from: 'plain', patch: [u32(56, 0)] },
  { name: 'refcount table too large', from: 'plain', patch: [u32(56, 0x100000)] },
  { name: 'refcount table offset misaligned', from: 'plain', patch: [u64(48, 0x10200)] },
  { name: 'refcount table offset huge', from: 'plain', patch: [u64(48, 0xffffffffffff0000n)] },
  { name: 'too many snapshots', from: 'plain', patch: [u32(60, 70000)] },
  { name: 'snapshot table offset misaligned', from: 'snap', patch: [u64(64, 0x70100)] },
  { name: 'L1 table too large', from: 'plain', patch: [u32(36, 0x1000000)] },
  { name: 'L1 table offset misaligned', from: 'plain', patch: [u64(40, 0x30008)] },
  { name: 'L1 table too small', from: 'plain', patch: [u64(24, 1n << 40n)] },
  { name: 'image too big', from: 'plain', patch: [u64(24, 1n << 62n)] },
  { name: 'header extension too large', from: 'plain', patch: [u32(112 + 4, 0x100000)] },
  { name: 'backing file name too long', from: 'backed', patch: [u32(16, 2000)] },
  { name: 'encryption method 3', from: 'plain', patch: [u32(32, 3)] },
  { name: 'snapshot extra data 2048', from: 'snap', patch: [(p) => patchU32(p, snap + 36, 2048)] },
  { name: 'bitmap type 2', from: 'bitmaps', patch: [(p) => writeBytes(p, bm.dir + 16, Uint8Array.of(2))] },
  { name: 'bitmap granularity 2^8', from: 'bitmaps', patch: [(p) => writeBytes(p, bm.dir + 17, Uint8Array.of(8))] },
  { name: 'bitmap reserved flag', from: 'bitmaps', patch: [(p) => patchU32(p, bm.dir + 12, 6)] },
  {
    name: 'bitmap table entry with reserved bits',
    from: 'bitmaps',
    patch: [(p) => patchU64(p, bm.table0, readU64(p, bm.table0) | 1n)],
  },
  { name: 'bitmap table size wrong', from: 'bitmaps', patch: [(p) => patchU32(p, bm.dir + 8, 2)] },
  { name: 'bitmap extra data', from: 'bitmaps', patch: [(p) => patchU32(p, bm.dir + 20, 8)] },
  { name: 'bitmap name size 0', from: 'bitmaps', patch: [(p) => patchU16(p, bm.dir + 18, 0)] },
  {
    name: 'duplicate bitmap names',
    from: 'bitmaps',
    patch: [(p) => writeBytes(p, bm.dir + 32 + 24, Buffer.from('b0'))],
  },
  { name: 'fewer bitmaps than the extension says', from: 'bitmaps', patch: [(p) => patchU32(p, bm.ext + 8, 3)] },
  { name: 'more bitmaps than the extension says', from: 'bitmaps', patch: [(p) => patchU32(p, bm.ext + 8, 1)] },
  { name: 'bitmap directory cut short', from: 'bitmaps', patch: [(p) => patchU64(p, bm.ext + 8 + 8, 60)] },
  { name: 'bitmap directory size 0', from: 'bitmaps', patch: [(p) => patchU64(p, bm.ext + 8 + 8, 0)] },
  {
    name: 'bitmap directory beyond end of file',
    from: 'bitmaps',
    patch: [(p) => patchU64(p, bm.ext + 8 + 16, 0x40000000)],
  },
  {
    name: 'bitmap directory offset misaligned',
    from: 'bitmaps',
    patch: [(p) => patchU64(p, bm.ext + 8 + 16, bm.dir + 512)],
  },
  { name: 'bitmaps extension reserved field', from: 'bitmaps', patch: [(p) => patchU32(p, bm.ext + 8 + 4, 1)] },
  { name: 'LUKS magic', from: 'luks', patch: [(p) => writeBytes(p, luks, Uint8Array.of(0))] },
  { name: 'LUKS version 2', from: 'luks', patch: [(p) => patchU16(p, luks + 6, 2)] },
  {
    name: 'LUKS cipher name not terminated',
    from: 'luks',
    patch: [(p) => writeBytes(p, luks + 8, Buffer.alloc(32, 0x61))],
  },
  { name: 'LUKS payload overlapping the header', from: 'luks', patch: [(p) => patchU32(p, luks + 104, 1)] },
  { name: 'LUKS master key iterations 0', from: 'luks', patch: [(p) => patchU32(p, luks + 164, 0)] },
  { name: 'LUKS key slot stripes', from: 'luks', patch: [(p) => patchU32(p, luks + 208 + 44, 3999)] },
  { name: 'LUKS key slot state', from: 'luks', patch: [(p) => patchU32(p, luks + 208, 5)] },
  { name: 'LUKS key slots overlapping', from: 'luks', patch: [(p) => patchU32(p, luks + 208 + 48 + 40, 9)] },
  {
    name: 'LUKS cipher mode without IV generator',
    from: 'luks',
    patch: [(p) => writeBytes(p, luks + 40, Buffer.from('xts\0'))],
  },
  { name: 'LUKS unknown hash', from: 'luks', patch: [(p) => writeBytes(p, luks + 72, Buffer.from('zzz\0'))] },
  { name: 'LUKS key size', from: 'luks', patch: [(p) => patchU32(p, luks + 108, 17)] },
  {
    name: 'LUKS essiv with an unusable hash',
    from: 'luks',
    patch: [(p) => writeBytes(p, luks + 40, Buffer.from('cbc-essiv:sha1\0')), (p) => patchU32(p, luks + 108, 16)],
  },
  {
    name: 'LUKS header beyond end of file',
    from: 'luks',
    patch: [(p) => patchU64(p, extensionOffsets(p).get(0x0537be77)! + 8, 0x100000000)],
  },
  {
    name: 'crypto extension too short for a LUKS header',
    from: 'luks',
    patch: [(p) => patchU64(p, extensionOffsets(p).get(0x0537be77)! + 16, 100)],
  },
];

describe('refusals match qemu-img info', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const p = join(t.dir, `${c.name.replace(/\W+/g, '_')}.qcow2`);
      copyFileSync(base(c.from), p);
      for (const patch of c.patch) patch(p);
      const before = readFileSync(p);
      const reason = qemuRefusal(p);
      expect(reason, 'QEMU refuses this image too').toBeDefined();
      const err = await collectImageInfo(p).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(InfoOpenError);
      const cause = (err as InfoOpenError).cause;
      expect(cause).toBeInstanceOf(Qcow2FormatError);
      expect((cause as Qcow2FormatError).qemuReason).toBe(reason);
      expect((err as Error).message).not.toContain('\n');
      expect((err as Error).message).toMatch(/\(.+ = .+\)$/); // names the field and the value
      expect(readFileSync(p).equals(before)).toBe(true);
    });
  }
});

describe('structures past the end of the file', () => {
  it("keep QEMU's reason but name the offset that is wrong", async () => {
    const p = join(t.dir, 'dir-past-eof.qcow2');
    copyFileSync(base('bitmaps'), p);
    patchU64(p, bm.ext + 8 + 16, 0x40000000);
    const e1 = await collectImageInfo(p).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(e1?.message).toMatch(
      /Bitmap '' doesn't satisfy the constraints \(header_extension\.bitmaps\.directory_offset = 0x40000000 \(beyond end of file, \d+ bytes\)\)$/,
    );
    const q = join(t.dir, 'luks-past-eof.qcow2');
    copyFileSync(base('luks'), q);
    patchU64(q, extensionOffsets(q).get(0x0537be77)! + 8, 0x100000000);
    const e2 = await collectImageInfo(q).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(e2?.message).toMatch(
      /Volume is not in LUKS format \(header_extension\.crypto\.offset = 0x100000000 \(beyond end of file, \d+ bytes\)\)$/,
    );
  });
});

describe('images QEMU opens despite oddities open here too', () => {
  it('a bitmap in use is not loaded, so a bad table entry does not matter', async () => {
    const p = join(t.dir, 'inuse.qcow2');
    copyFileSync(base('bitmaps'), p);
    patchU32(p, bm.dir + 12, 3); // in-use + auto
    patchU64(p, bm.table0, readU64(p, bm.table0) | 1n);
    expect(qemuRefusal(p)).toBeUndefined();
    const [info] = await collectImageInfo(p);
    expect(info!.formatSpecific!.bitmaps!.map((b) => b.flags)).toEqual([['in-use', 'auto'], ['auto']]);
  });

  it('bitmaps extension without the autoclear bit: a warning and no bitmaps, as QEMU', async () => {
    const p = join(t.dir, 'stale-bitmaps.qcow2');
    copyFileSync(base('bitmaps'), p);
    patchU64(p, 88, 0);
    const q = run('qemu-img', ['info', '--output=json', p]);
    expect(q.status).toBe(0);
    expect(q.stderr).toContain('a program lacking bitmap support modified this file');
    const [info] = await collectImageInfo(p);
    expect(info!.formatSpecific!.bitmaps).toBeUndefined();
    expect(info!.warnings[0]).toContain('a program lacking bitmap support modified this file');
  });

  it('a v2 header followed by extension space with garbage after the end marker', async () => {
    const p = join(t.dir, 'v2-garbage.qcow2');
    copyFileSync(base('v2'), p);
    const end = extensionOffsets(p).get(0)!;
    writeBytes(p, end + 8, Buffer.alloc(64, 0xee));
    expect(qemuRefusal(p)).toBeUndefined();
    const [info] = await collectImageInfo(p);
    expect(info!.formatSpecific!.compat).toBe('0.10');
    expect(plainEnd).toBeGreaterThan(0);
  });
});

describe('the CLI', () => {
  it('exits 1 with one line naming the structure, field and value', () => {
    const p = join(t.dir, 'cli-bad.qcow2');
    copyFileSync(base('plain'), p);
    patchU32(p, 36, 0x1000000);
    const r = run('node', ['bin/qcow2-doctor.cjs', 'info', p]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `qcow2-doctor: Could not open '${p}': Active L1 table too large (header.l1_table_size = 16777216)\n`,
    );
  });

  it('exits 1 for a missing file and for a backing chain loop', () => {
    const missing = run('node', ['bin/qcow2-doctor.cjs', 'info', join(t.dir, 'nope.qcow2')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(
      `qcow2-doctor: Could not open '${join(t.dir, 'nope.qcow2')}': No such file or directory\n`,
    );
    const a = join(t.dir, 'loop-a.qcow2');
    const b = join(t.dir, 'loop-b.qcow2');
    createQcow2(b, '1M');
    createQcow2(a, '1M', {}, { file: b, format: 'qcow2' });
    qemuImg('rebase', '-u', '-f', 'qcow2', '-b', a, '-F', 'qcow2', b);
    const loop = run('node', ['bin/qcow2-doctor.cjs', 'info', '--backing-chain', a]);
    expect(loop.status).toBe(1);
    expect(loop.stderr).toBe(`qcow2-doctor: Backing file '${a}' creates an infinite loop.\n`);
    const qemu = run('qemu-img', ['info', '--backing-chain', a]);
    expect(qemu.stderr).toContain(`Backing file '${a}' creates an infinite loop.`);
  });

  it('refuses a backing chain deeper than 16 layers in one line, exit 1', () => {
    const d = join(t.dir, 'deep');
    run('mkdir', ['-p', d]);
    createQcow2(join(d, 'l0.qcow2'), '1M');
    for (let i = 1; i <= 17; i++)
      createQcow2(join(d, `l${i}.qcow2`), '1M', {}, { file: `l${i - 1}.qcow2`, format: 'qcow2' });
    const ok = run('node', ['bin/qcow2-doctor.cjs', 'info', '--backing-chain', '--output=json', join(d, 'l15.qcow2')]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toHaveLength(16);
    const deep = run('node', ['bin/qcow2-doctor.cjs', 'info', '--backing-chain', join(d, 'l17.qcow2')]);
    expect(deep.status).toBe(1);
    expect(deep.stdout).toBe('');
    expect(deep.stderr).toBe(
      `qcow2-doctor: Could not open '${join(d, 'l17.qcow2')}': Backing chain is deeper than 16 images (backing chain depth = 17)\n`,
    );
  });

  it('prints the same JSON as qemu-img info', () => {
    const p = base('plain');
    const ours = run('node', ['bin/qcow2-doctor.cjs', 'info', '--output=json', p]);
    expect(ours.status).toBe(0);
    expect(ours.stdout).toBe(run('qemu-img', ['info', '--output=json', p]).stdout);
  });
});
