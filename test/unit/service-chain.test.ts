// The app's overview and guest.locate follow backing chains through the one chain follower
// (image/backing-chain.ts), with its confinement: a backing file the host may not read is named
// but never opened, a missing one is named as missing, and a readable chain is followed to the
// layer qemu-img map names.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { confinedTo } from '../../engine/image/backing-chain.js';
import { openInputFile } from '../../engine/io/input-file.js';
import { buildOverview } from '../../engine/service/overview.js';
import { locateInBacking } from '../../engine/service/locate.js';

const t = tempDir('q2d-chain-');
afterAll(() => t.cleanup());

async function withImage<T>(path: string, fn: (img: Qcow2Image) => Promise<T>): Promise<T> {
  const io = await openInputFile(path);
  try {
    return await fn(await Qcow2Image.open(io));
  } finally {
    await io.close();
  }
}

describe('backing chains in the overview and guest.locate', () => {
  const root = join(t.dir, 'root');
  mkdirSync(root);
  const outside = join(t.dir, 'outside.qcow2');
  const base = join(root, 'base.qcow2');
  const mid = join(root, 'mid.qcow2');
  const top = join(root, 'top.qcow2');
  const escapes = join(root, 'escapes.qcow2');
  const orphan = join(root, 'orphan.qcow2');
  createQcow2(base, '4M');
  qemuIo(base, ['write -P 0x11 65536 64k']);
  createQcow2(mid, '4M', {}, { file: 'base.qcow2', format: 'qcow2' });
  createQcow2(top, '4M', {}, { file: 'mid.qcow2', format: 'qcow2' });
  createQcow2(outside, '4M');
  createQcow2(escapes, '4M', {}, { file: '../outside.qcow2', format: 'qcow2' });
  createQcow2(join(root, 'gone.qcow2'), '4M');
  createQcow2(orphan, '4M', {}, { file: 'gone.qcow2', format: 'qcow2' });
  qemuImg('rebase', '-u', '-b', 'never-there.qcow2', '-F', 'qcow2', orphan);
  const mayRead = confinedTo(root);
  const may = async (p: string) => mayRead(p);

  it('a readable chain: every layer, named as its overlay records it, and the layer holding the data', async () => {
    const ov = await withImage(top, (img) => buildOverview(img, top, may));
    expect(ov.backing).toEqual([
      { depth: 1, name: 'mid.qcow2', format: 'qcow2', present: true, virtualSize: 4 << 20 },
      { depth: 2, name: 'base.qcow2', format: 'qcow2', present: true, virtualSize: 4 << 20 },
    ]);
    const map = JSON.parse(qemuImg('map', '--output=json', top)) as Array<{
      start: number;
      length: number;
      depth: number;
      offset?: number;
    }>;
    const held = map.find((m) => m.start <= 65536 && 65536 < m.start + m.length)!;
    expect(held.depth).toBe(2);
    const at = await withImage(top, (img) => locateInBacking(img, top, 65536, may));
    expect(at).toEqual({
      depth: 2,
      name: 'base.qcow2',
      stateName: 'data',
      hostOffset: held.offset! + 65536 - held.start,
    });
  });

  it('a backing file outside the root is named, never opened', async () => {
    const ov = await withImage(escapes, (img) => buildOverview(img, escapes, may));
    expect(ov.backing).toEqual([{ depth: 1, name: '../outside.qcow2', format: 'qcow2', present: false }]);
    const at = await withImage(escapes, (img) => locateInBacking(img, escapes, 0, may));
    expect(at).toEqual({ depth: 1, name: '../outside.qcow2', stateName: 'not readable here' });
  });

  it('a missing backing file is named as missing (unconfined: the CLI and Electron)', async () => {
    const anywhere = async () => true;
    const ov = await withImage(orphan, (img) => buildOverview(img, orphan, anywhere));
    expect(ov.backing).toEqual([{ depth: 1, name: 'never-there.qcow2', format: 'qcow2', present: false }]);
    const at = await withImage(orphan, (img) => locateInBacking(img, orphan, 0, anywhere));
    expect(at).toEqual({ depth: 1, name: 'never-there.qcow2', stateName: 'missing' });
  });
});
