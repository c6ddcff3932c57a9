// The overlap guard: on an image whose metadata is already inconsistent, the writer refuses to put
// bytes onto metadata (QEMU: "Preventing invalid write on metadata"), marks the image corrupt and
// leaves the metadata bytes untouched.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileIO } from '../../engine/io/file-io.js';
import { Qcow2Writer } from '../../engine/write/writer.js';
import { createQcow2, patchU16, patchU64, qemuIo, readBytes, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-overlap-');
afterAll(t.cleanup);

function base(name: string): string {
  const f = join(t.dir, name);
  createQcow2(f, '64M');
  qemuIo(f, ['write -P 0x11 0 128k']); // L2 at 0x40000, data at 0x50000 and 0x60000
  return f;
}

describe('metadata overlap guard', () => {
  it('an L2 entry pointing into the refcount table: the guest write is refused, the table untouched', async () => {
    const f = base('into-reftable.qcow2');
    patchU64(f, 0x40000, 0x8000000000010000n);
    const before = readBytes(f, 0x10000, 65536);
    const io = await FileIO.open(f, { write: true });
    const w = await Qcow2Writer.open(io);
    await expect(w.write(0, new Uint8Array(512).fill(0xee))).rejects.toThrow(
      /overlaps with refcount table.*marked corrupt/,
    );
    await expect(w.write(65536, new Uint8Array(512))).rejects.toThrow(/unusable/);
    await io.close();
    expect(readBytes(f, 0x10000, 65536).equals(before)).toBe(true);
    expect(readBytes(f, 79, 1)[0]! & 2).toBe(2); // corrupt bit
    const io2 = await FileIO.open(f, { write: true });
    await expect(Qcow2Writer.open(io2)).rejects.toThrow(/marked corrupt/);
    await io2.close();
  });

  it('an L2 table whose refcount was zeroed is not handed out as a free cluster', async () => {
    const f = base('l2-refcount-zero.qcow2');
    patchU16(f, 0x20000 + 4 * 2, 0); // refcount of cluster 4 (the L2 table)
    const before = readBytes(f, 0x40000, 65536);
    const io = await FileIO.open(f, { write: true });
    const w = await Qcow2Writer.open(io);
    await expect(w.write(1 << 20, new Uint8Array(4096).fill(0x22))).rejects.toThrow(/overlaps with active L2 table/);
    await io.close();
    expect(readBytes(f, 0x40000, 65536).equals(before)).toBe(true);
  });
});
