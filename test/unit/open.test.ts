import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileIO } from '../../engine/io/file-io.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { Qcow2FormatError } from '../../engine/base/errors.js';
import { createQcow2, patchU32, qemuCheck, qemuIo, sha256, tempDir, writeBytes } from '../helpers/qemu.js';
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

  it('reads header extensions that run past the first 64 KiB of a large header cluster', async () => {
    // With 2 MiB clusters, opening reads the header cluster's first 64 KiB unless the header and
    // its extensions go further: here an unknown 70000-byte extension pushes the end marker past it.
    const f = join(t.dir, 'big-ext.qcow2');
    createQcow2(f, '1G', { cluster_size: '2M' });
    const head = readFileSync(f).subarray(0, 4096);
    let off = head.readUInt32BE(100); // header_length
    while (head.readUInt32BE(off) !== 0) off += 8 + Math.ceil(head.readUInt32BE(off + 4) / 8) * 8;
    const ext = Buffer.alloc(8 + 70000 + 8);
    ext.writeUInt32BE(0x12345678, 0);
    ext.writeUInt32BE(70000, 4);
    ext.fill(0xab, 8, 8 + 70000);
    writeBytes(f, off, ext); // the new end marker is its last 8 (zero) bytes
    const img = await Qcow2Image.open(new MemoryIO(readFileSync(f)));
    const unknown = img.header.extensions.find((e) => e.type === 0x12345678);
    expect(unknown?.length).toBe(70000);
    expect(unknown?.data.every((b) => b === 0xab)).toBe(true);
    // QEMU reads the same header (qemu-img check opens it and finds nothing wrong).
    expect(qemuCheck(f).status).toBe(0);
    // An extension claiming to run past the cluster is refused, as with the whole cluster read.
    patchU32(f, off + 4, 3 * 1024 * 1024);
    await expect(Qcow2Image.open(new MemoryIO(readFileSync(f)))).rejects.toThrow('Header extension too large');
  });
});
