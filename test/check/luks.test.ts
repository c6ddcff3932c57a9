// LUKS-encrypted images: QEMU needs the secret to check them; we do not (metadata is never
// encrypted), and we count the LUKS header area exactly as QEMU does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { patchU16, qemuImgCreateLuks, readU64, run, sha256, tempDir } from '../helpers/qemu.js';
import { countersFromQemuJson, ourCheck, qemuProblemLines } from './harness.js';

const tmp = tempDir('q2d-luks-');
afterAll(() => tmp.cleanup());
const SECRET = 'secret,id=sec0,data=abc';

let template = '';
// Creating a LUKS image calibrates the key derivation (about 10 s here): do it once, copy it.
beforeAll(() => {
  template = makeLuksImage('template.qcow2');
});

function luksImage(name: string): string {
  const f = join(tmp.dir, name);
  copyFileSync(template, f);
  return f;
}

function makeLuksImage(name: string): string {
  const f = join(tmp.dir, name);
  const args = [
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    SECRET,
    '-o',
    'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10',
    f,
    '64M',
  ];
  const c = qemuImgCreateLuks(args);
  expect(c.status, c.stderr).toBe(0);
  const r = run('qemu-io', [
    '--object',
    SECRET,
    '--image-opts',
    `driver=qcow2,file.filename=${f},encrypt.key-secret=sec0`,
    '-c',
    'write -P 1 0 64k',
  ]);
  expect(r.status).toBe(0);
  return f;
}

function qemuLuksCheck(f: string): { status: number; json: Record<string, unknown>; stderr: string } {
  const r = run('qemu-img', [
    'check',
    '--object',
    SECRET,
    '--image-opts',
    `driver=qcow2,file.filename=${f},encrypt.key-secret=sec0`,
    '--output=json',
  ]);
  return { status: r.status, json: JSON.parse(r.stdout) as Record<string, unknown>, stderr: r.stderr };
}

describe('LUKS images', () => {
  it("checks clean without the secret, with QEMU's counters", async () => {
    const f = luksImage('clean.qcow2');
    const q = qemuLuksCheck(f);
    const before = sha256(f);
    const ours = await ourCheck(f);
    expect(sha256(f)).toBe(before);
    expect(ours.exit).toBe(q.status);
    expect(ours.result!.counters).toMatchObject(countersFromQemuJson(q.json));
  });

  it('finds an unrefcounted LUKS header cluster as QEMU does', async () => {
    const f = luksImage('damaged.qcow2');
    // The LUKS area starts right after the L1 table (cluster 4 in a new image): zero its refcount.
    const ext = findCryptoExt(f);
    const cluster = ext / 0x10000;
    patchU16(f, 0x20000 + cluster * 2, 0);
    const q = qemuLuksCheck(f);
    const ours = await ourCheck(f);
    expect(q.status).toBe(2);
    expect(ours.exit).toBe(2);
    expect(ours.result!.counters).toMatchObject(countersFromQemuJson(q.json));
    expect(ours.lines).toEqual(qemuProblemLines(q.stderr));
    expect(ours.lines[0]).toBe(`ERROR cluster ${cluster} refcount=0 reference=1`);
  });
});

/** Offset of the LUKS area from the full-disk-encryption header extension. */
function findCryptoExt(f: string): number {
  let off = 112;
  for (;;) {
    const type = Number(readU64(f, off) >> 32n);
    const len = Number(readU64(f, off) & 0xffffffffn);
    if (type === 0) throw new Error('no crypto extension');
    if (type === 0x0537be77) return Number(readU64(f, off + 8));
    off += 8 + Math.ceil(len / 8) * 8;
  }
}
