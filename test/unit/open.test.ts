import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileIO } from '../../engine/io/file-io.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { Qcow2FormatError } from '../../engine/errors.js';
import { createQcow2, patchU32, qemuIo, sha256, tempDir } from '../helpers/qemu.js';
import { readFileSync } from 'node:fs';

const t = tempDir();
afterAll(t.cleanup);

describe('opening a qcow2 image', () => {
  it('decodes the header QEMU writes and never changes a byte', async () => {
    const f = join(t.dir, 'a.qcow2');
    createQcow2(f, '64M');
    qemuIo(f, ['write -P 0x11 0 128k']);
    const before = sha256(f);
    const io = await FileIO.open(f);
    const img = await Qcow2Image.open(io);
    expect(img.header.version).toBe(3);
    expect(img.clusterSize).toBe(65536);
    expect(img.virtualSize).toBe(64 * 1024 * 1024);
    expect(img.header.l1TableOffset).toBe(0x30000);
    expect(img.header.refcountTableOffset).toBe(0x10000);
    expect(img.header.featureTable.map((f) => f.name)).toContain('lazy refcounts');
    expect(await img.refcount(0)).toBe(1);
    expect(await img.refcount(5)).toBe(1);
    expect(await img.refcount(7)).toBe(0);
    await io.close();
    expect(sha256(f)).toBe(before);
  });

  it('refuses an absurd cluster size in one line naming the field and value', async () => {
    const f = join(t.dir, 'b.qcow2');
    createQcow2(f, '1M');
    patchU32(f, 20, 30);
    const img = Qcow2Image.open(new MemoryIO(readFileSync(f)));
    await expect(img).rejects.toThrow(Qcow2FormatError);
    await expect(img).rejects.toThrow('Unsupported cluster size: 2^30 (header.cluster_bits = 30)');
  });
});
