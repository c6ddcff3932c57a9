import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stripFile } from '../../engine/strip/strip.js';
import {
  createQcow2,
  patchU16,
  patchU32,
  patchU64,
  qemuCheckHuman,
  qemuImg,
  qemuImgCreateLuks,
  qemuIo,
  readBytes,
  run,
  sha256,
  tempDir,
} from '../helpers/qemu.js';
import { allZeroIn, containsRun, guestDataRanges } from './guest-data.js';

const t = tempDir('q2d-strip-');
afterAll(t.cleanup);
let n = 0;
const path = (name: string): string => join(t.dir, `${n++}-${name}`);

/** qemu-img check of a file, in human form, with the file name taken out so two files compare. */
function verdict(file: string): { status: number; stdout: string; stderr: string } {
  const r = qemuCheckHuman(file);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.split(file).join('IMAGE') };
}

const PATTERNS = [0x5a, 0xa5, 0x3c];

/** An image with three patterns written, a snapshot and a COW'ed cluster (64 MiB, 64 KiB clusters). */
function makeImage(name: string, options: Record<string, string | number | boolean> = {}): string {
  const f = path(name);
  createQcow2(f, '64M', options);
  qemuIo(f, ['write -P 0x5a 0 128k', 'write -P 0xa5 1M 64k']);
  return f;
}

async function stripAndCompare(orig: string, guestRanges: Array<[number, number]>): Promise<string> {
  const out = `${orig}.stripped`;
  const before = sha256(orig);
  await stripFile(orig, out);
  expect(sha256(orig)).toBe(before);
  expect(statSync(out).size).toBe(statSync(orig).size);
  expect(verdict(out)).toEqual(verdict(orig));
  for (const p of PATTERNS) expect(containsRun(out, p)).toBe(false);
  expect(allZeroIn(out, guestRanges)).toBe(true);
  return out;
}

describe('strip: metadata-only copy', () => {
  it('keeps every structure byte-identical at the same offsets and no guest byte (snapshots, compressed clusters)', async () => {
    const f = makeImage('full.qcow2');
    qemuImg('snapshot', '-c', 'first', f);
    qemuIo(f, ['write -P 0x3c 0 64k', 'write -c -P 0x5a 2M 64k', 'write -c -P 0xa5 3M 64k']);
    const guest = guestDataRanges(f);
    expect(guest.length).toBeGreaterThan(3);
    const r = await stripFile(f, `${f}.stripped`, {});
    const out = `${f}.stripped`;
    expect(verdict(out)).toEqual(verdict(f));
    for (const p of PATTERNS) expect(containsRun(out, p)).toBe(false);
    expect(allZeroIn(out, guest)).toBe(true);
    // The header cluster, refcount table and block, L1 and snapshot table are the same bytes.
    const h = readFileSync(f);
    const l1 = Number(h.readBigUInt64BE(40));
    const snap = Number(h.readBigUInt64BE(64));
    for (const [off, len] of [
      [0, 65536],
      [0x10000, 65536],
      [0x20000, 65536],
      [l1, 8],
      [snap, 40],
    ] as const)
      expect(readBytes(out, off, len).equals(readBytes(f, off, len))).toBe(true);
    expect(r.structures.l2?.count).toBeGreaterThanOrEqual(2);
    expect(r.structures['snapshot-l1']?.count).toBe(1);
    expect(r.conflicts).toEqual([]);
    // Sparse: far fewer blocks allocated than the original.
    expect(statSync(out).blocks).toBeLessThan(statSync(f).blocks);
    expect(qemuImg('snapshot', '-l', out)).toContain('first');
  });

  it.each([
    ['v2 (compat=0.10)', { compat: '0.10' }],
    ['512-byte clusters', { cluster_size: 512 }],
    ['1-bit refcounts', { refcount_bits: 1 }],
    ['64-bit refcounts', { refcount_bits: 64 }],
    ['extended L2 entries', { extended_l2: true, cluster_size: 65536 }],
    ['zstd compression', { compression_type: 'zstd' }],
    ['lazy refcounts', { lazy_refcounts: true }],
  ])('reproduces the check on %s', async (_label, options) => {
    const f = makeImage('variant.qcow2', options);
    if (!('compat' in options)) qemuIo(f, ['write -c -P 0x3c 4M 64k']);
    await stripAndCompare(f, guestDataRanges(f));
  });

  it('keeps persistent bitmaps (directory, tables, data) and the LUKS header area', async () => {
    const f = makeImage('bitmap.qcow2');
    qemuImg('bitmap', '--add', f, 'b0');
    qemuIo(f, ['write -P 0x3c 5M 64k']);
    const guest = guestDataRanges(f);
    await stripAndCompare(f, guest);
    expect(qemuImg('info', `${f}.stripped`)).toContain('b0');

    const l = path('luks.qcow2');
    const secret = ['--object', 'secret,id=s0,data=hunter2'];
    const created = qemuImgCreateLuks([
      'create',
      '-q',
      '-f',
      'qcow2',
      ...secret,
      '-o',
      'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=50',
      l,
      '16M',
    ]);
    expect(created.status).toBe(0);
    const io = run('qemu-io', [
      ...secret,
      '--image-opts',
      `driver=qcow2,file.filename=${l},encrypt.key-secret=s0`,
      '-c',
      'write -P 0x5a 0 64k',
    ]);
    expect(io.status).toBe(0);
    const out = `${l}.stripped`;
    await stripFile(l, out);
    const check = (file: string) => {
      const r = run('qemu-img', [
        'check',
        ...secret,
        '--image-opts',
        `driver=qcow2,file.filename=${file},encrypt.key-secret=s0`,
      ]);
      return { status: r.status, stdout: r.stdout };
    };
    expect(check(out)).toEqual(check(l));
    expect(check(out).status).toBe(0);
    // The LUKS area (where its header extension says) is byte-identical, and it is not empty.
    const [luksOff, luksLen] = cryptoExtension(l);
    expect(luksLen).toBeGreaterThan(0);
    expect(readBytes(out, luksOff, luksLen).equals(readBytes(l, luksOff, luksLen))).toBe(true);
    expect(containsRun(out, 0x5a)).toBe(false);
  });
});

/** Offset and length from the full-disk-encryption header extension (type 0x0537be77). */
function cryptoExtension(file: string): [number, number] {
  const h = readBytes(file, 0, 65536);
  for (let off = h.readUInt32BE(100); off + 8 <= h.length; ) {
    const type = h.readUInt32BE(off);
    const len = h.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === 0x0537be77) return [Number(h.readBigUInt64BE(off + 8)), Number(h.readBigUInt64BE(off + 16))];
    off += 8 + Math.ceil(len / 8) * 8;
  }
  throw new Error('no crypto header extension');
}

/** Any failing exit status (QEMU gives 1, 2 or 3 depending on the damage). */
const NONZERO = -1;

/** Damage at precise bytes of a 64 MiB image with data clusters 5, 6 (0x5a) and 7 (0xa5). */
const DAMAGE: Array<[string, (f: string) => void, number]> = [
  ['leaked cluster', (f) => patchU64(f, 0x40008, 0), 3],
  ['refcount too high', (f) => patchU16(f, 0x20000 + 5 * 2, 2), NONZERO],
  ['refcount zero but referenced (needs rebuild)', (f) => patchU16(f, 0x20000 + 5 * 2, 0), NONZERO],
  ['cross-linked data cluster', (f) => patchU64(f, 0x40008, 0x8000000000050000n), NONZERO],
  ['COPIED flag missing', (f) => patchU64(f, 0x40000, 0x50000n), NONZERO],
  ['L2 entry with reserved bits', (f) => patchU64(f, 0x40000, 0x8000000000050002n), NONZERO],
  ['data cluster beyond end of file', (f) => patchU64(f, 0x40000, 0x8000000001000000n), NONZERO],
  ['unaligned data cluster', (f) => patchU64(f, 0x40000, 0x8000000000050200n), NONZERO],
  ['refcount block outside image', (f) => patchU64(f, 0x10008, 0x10000000n), NONZERO],
  ['refcount table entry with reserved bits', (f) => patchU64(f, 0x10000, 0x20001n), NONZERO],
  ['unaligned refcount block', (f) => patchU64(f, 0x10000, 0x20200n), NONZERO],
  ['L2 entry pointing at its own L2 table', (f) => patchU64(f, 0x40008, 0x8000000000040000n), NONZERO],
  ['corrupt bit', (f) => patchU64(f, 72, 2n), 0],
  ['L1 entry with reserved bits', (f) => patchU64(f, 0x30000, 0x8000000000040001n), NONZERO],
];

describe('strip: damaged images give the same findings', () => {
  it.each(DAMAGE)('%s', async (_label, damage, status) => {
    const f = makeImage('damaged.qcow2');
    const guest = guestDataRanges(f);
    damage(f);
    const orig = verdict(f);
    if (status === NONZERO) expect(orig.status).not.toBe(0);
    else expect(orig.status).toBe(status);
    await stripAndCompare(f, guest);
  });

  it('a dirty image left by a crash with lazy refcounts', async () => {
    const f = path('dirty.qcow2');
    createQcow2(f, '64M', { lazy_refcounts: true });
    run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 128k', '-c', 'sigraise 9', f]);
    expect(readBytes(f, 79, 1)[0]! & 1).toBe(1);
    await stripAndCompare(f, [[0x50000, 0x70000]]);
  });

  it('a snapshot whose L1 offset is unaligned: not followed, said so, same findings', async () => {
    const f = makeImage('snap.qcow2');
    qemuImg('snapshot', '-c', 's', f);
    qemuIo(f, ['write -P 0x3c 0 64k']);
    const guest = guestDataRanges(f);
    const snap = Number(readBytes(f, 64, 8).readBigUInt64BE());
    const l1 = Number(readBytes(f, snap, 8).readBigUInt64BE());
    patchU64(f, snap, l1 + 0x200);
    const r = await stripFile(f, `${f}.stripped`);
    expect(r.notes.join('\n')).toMatch(/snapshot entry 0: L1 table offset 0x[0-9a-f]+ is not cluster aligned/);
    expect(verdict(`${f}.stripped`)).toEqual(verdict(f));
    expect(allZeroIn(`${f}.stripped`, guest)).toBe(true);
  });

  it('an L1 entry pointing at a guest data cluster: that cluster is not copied, and strip says why', async () => {
    const f = makeImage('l1-data.qcow2');
    const guest = guestDataRanges(f);
    patchU64(f, 0x30000, 0x8000000000050000n);
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(containsRun(out, 0x5a)).toBe(false);
    expect(allZeroIn(out, guest)).toBe(true);
    // Nothing maps cluster 5 as data any more (the real L2 table is orphaned), but its bytes are
    // no L2 table: the copy holds nothing there.
    expect(allZeroIn(out, [[0x50000, 0x60000]])).toBe(true);
    expect(verdict(out).status).not.toBe(0);
    expect(r.conflicts).toEqual([{ cluster: 5, kinds: ['l2'], kept: false }]);
    expect(r.notes.join('\n')).toContain(
      'cluster 5 (0x50000) is pointed at as L2 tables, but its content does not look like that (8192 of 8192 entries malformed); zeroed',
    );
  });

  it('an L2 entry mapping the refcount block as data: the block is metadata-shaped and kept', async () => {
    const f = makeImage('rb-data.qcow2');
    patchU64(f, 0x40008, 0x8000000000020000n);
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.conflicts).toEqual([
      { cluster: 2, kinds: ['refcount-block'], kept: true, claimedBy: 'L2 table 0x40000 entry 1' },
    ]);
    expect(verdict(out)).toEqual(verdict(f));
  });

  it('a data cluster claimed as a refcount block is zeroed, not copied', async () => {
    const f = makeImage('data-rb.qcow2');
    patchU64(f, 0x10008, 0x50000n); // refcount table entry 1 -> data cluster 5 (pattern 0x5a)
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.conflicts).toEqual([
      { cluster: 5, kinds: ['refcount-block'], kept: false, claimedBy: 'L2 table 0x40000 entry 0' },
    ]);
    expect(r.notes.join('\n')).toContain('zeroed to keep guest data out');
    expect(containsRun(out, 0x5a)).toBe(false);
  });

  it('a header whose L1 pointer leads into guest data: those bytes are not copied', async () => {
    const f = makeImage('l1-into-data.qcow2');
    patchU64(f, 40, 0x50000n); // l1_table_offset -> data cluster 5 (0x5a)
    patchU32(f, 36, 16); // l1_size: 16 entries of guest data
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.conflicts).toEqual([{ cluster: 5, kinds: ['l1'], kept: false }]);
    expect(containsRun(out, 0x5a, 16)).toBe(false);
  });

  it('an unaligned L2 pointer: nothing is copied there, and strip says so', async () => {
    const f = makeImage('unaligned-l2.qcow2');
    patchU64(f, 0x30000, 0x8000000000050200n);
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.notes).toContain(
      'active L1 table entry 0 points at 0x50200, which is not cluster aligned; nothing copied there',
    );
    expect(containsRun(out, 0x5a)).toBe(false);
  });
});

describe('strip: backing chains', () => {
  it('--with-backing strips every layer next to OUT; QEMU checks the stripped chain as the original one', () => {
    const dir = path('chain');
    const out = `${dir}-out`;
    mkdirSync(dir);
    mkdirSync(out);
    const raw = join(dir, 'raw.img');
    writeFileSync(raw, Buffer.alloc(16 << 20, 0x3c));
    createQcow2(join(dir, 'base.qcow2'), '16M', {}, { file: 'raw.img', format: 'raw' });
    qemuIo(join(dir, 'base.qcow2'), ['write -P 0x5a 0 64k']);
    const top = join(dir, 'top.qcow2');
    createQcow2(top, '16M', {}, { file: 'base.qcow2', format: 'qcow2' });
    qemuIo(top, ['write -P 0xa5 1M 64k', 'write -P 0xa5 2M 64k']);
    patchU64(top, 0x40000 + 32 * 8, 0); // leak the cluster at guest 2M
    const r = run('node', ['bin/qcow2-doctor.cjs', 'strip', '--with-backing', top, join(out, 'top.qcow2')]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('an empty (all-zero, sparse) stand-in for the raw backing file');
    expect(verdict(join(out, 'top.qcow2'))).toEqual(verdict(top));
    expect(verdict(join(out, 'base.qcow2'))).toEqual(verdict(join(dir, 'base.qcow2')));
    for (const f of ['top.qcow2', 'base.qcow2', 'raw.img']) {
      expect(statSync(join(out, f)).size).toBe(statSync(join(dir, f)).size);
      for (const p of PATTERNS) expect(containsRun(join(out, f), p)).toBe(false);
    }
    // A plain strip says how to bring the backing file along.
    const plain = run('node', ['bin/qcow2-doctor.cjs', 'strip', top, join(out, 'alone.qcow2')]);
    expect(plain.stdout).toContain("backing file 'base.qcow2'");
  });
});

describe('strip: external data file', () => {
  it('keeps the qcow2 metadata; the data file is not part of the copy', async () => {
    const f = path('ext.qcow2');
    const raw = `${f}.data`;
    createQcow2(f, '16M', { data_file: raw });
    qemuIo(f, ['write -P 0x5a 0 128k', 'write -P 0xa5 1M 64k']);
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.conflicts).toEqual([]);
    // QEMU opens the data file named in the header for both: same verdict.
    expect(verdict(out)).toEqual(verdict(f));
    expect(containsRun(out, 0x5a, 16)).toBe(false);
    expect(statSync(out).size).toBe(statSync(f).size);
  });
});

describe('strip: refusals', () => {
  it('a header QEMU refuses keeps only the header, and the refusal reproduces', async () => {
    const f = makeImage('badfeature.qcow2');
    patchU64(f, 72, 0x40n);
    const out = `${f}.stripped`;
    const r = await stripFile(f, out);
    expect(r.headerRefusal).toContain('Unsupported qcow2 feature(s)');
    expect(verdict(out)).toEqual(verdict(f));
    expect(containsRun(out, 0x5a)).toBe(false);
  });

  it('refuses a file that is not qcow2, an existing output and the input itself', async () => {
    const raw = path('raw.img');
    writeFileSync(raw, Buffer.alloc(65536, 7));
    await expect(stripFile(raw, `${raw}.out`)).rejects.toThrow(
      'Image is not in qcow2 format (header.magic = 0x7070707)',
    );
    expect(existsSync(`${raw}.out`)).toBe(false);
    const f = makeImage('exists.qcow2');
    copyFileSync(f, `${f}.taken`);
    await expect(stripFile(f, `${f}.taken`)).rejects.toThrow('already exists');
    await expect(stripFile(f, f, { force: true })).rejects.toThrow('is the input image itself');
    expect(sha256(`${f}.taken`)).toBe(sha256(f));
  });

  it('the CLI prints what it kept and what it left out', () => {
    const f = makeImage('cli.qcow2');
    patchU64(f, 0x30000, 0x8000000000050200n);
    const r = run('node', ['bin/qcow2-doctor.cjs', 'strip', f, `${f}.out`]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('metadata-only copy');
    expect(r.stdout).toContain('not cluster aligned; nothing copied there');
    const j = run('node', ['bin/qcow2-doctor.cjs', 'strip', '--output=json', f, `${f}.out2`]);
    expect(JSON.parse(j.stdout).fileSize).toBe(statSync(f).size);
    const again = run('node', ['bin/qcow2-doctor.cjs', 'strip', f, `${f}.out`]);
    expect(again.status).toBe(1);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
  });
});
