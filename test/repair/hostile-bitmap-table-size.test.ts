// A fuzz finding (repair-plan target): a bitmap directory entry whose table_size is QEMU's limit
// (0x8000000 entries, a 1 GiB table) in a 400 KiB file. The traversal read the whole table, zeros
// past the end of the file included, and walked its 134 million entries: the repair planner took
// 10 s of CPU and 1 GiB of memory. Past the end of the file every entry is empty, so only the part
// in the file is read. Asserted by the bytes read (not by time), on a real qemu-img image.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createQcow2, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { runCheckPasses } from '../../engine/check/index.js';
import { planRepair } from '../../engine/repair/planner.js';

const t = tempDir('q2d-hostile-bitmap-');
afterAll(t.cleanup);

/** A read-only in-memory file that counts the bytes asked of it. */
class CountingIO extends MemoryIO {
  asked = 0;
  override async read(offset: number, length: number): Promise<Uint8Array> {
    this.asked += length;
    return super.read(offset, length);
  }
}

describe('a bitmap table_size at QEMU limit in a small file', () => {
  it('the check and the repair planner read about the file, not the 1 GiB the entry claims', async () => {
    const p = join(t.dir, 'bitmaps.qcow2');
    createQcow2(p, '4M', { cluster_size: '4k' });
    qemuImg('bitmap', '--add', p, 'b0');
    qemuImg('bitmap', '--add', '-g', '8k', p, 'b1');
    qemuIo(p, ['write -P 7 0 256k', 'write -P 8 1M 64k']);
    const bytes = new Uint8Array(readFileSync(p));
    const probe = await Qcow2Image.open(new MemoryIO(bytes, 'x', true), { checkMode: true });
    const dir = probe.header.bitmaps!.directoryOffset;
    // Entry 0 is 24 bytes + the name "b0", padded to 32; entry 1's table_size is its u32 at +8.
    new DataView(bytes.buffer).setUint32(dir + 32 + 8, 0x8000000);

    const io = new CountingIO(bytes, 'bitmaps.qcow2', true);
    const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
    const before = await runCheckPasses(img, {});
    expect(before.anomalies.length).toBeGreaterThan(0); // the table runs past the end of the file
    for (const mode of ['leaks', 'all'] as const)
      await planRepair(io, { mode, name: 'bitmaps.qcow2', anomalies: before.anomalies });
    expect(io.asked).toBeLessThan(64 * bytes.length);
    expect(io.asked).toBeLessThan(0x8000000 * 8);
  }, 120_000);
});
