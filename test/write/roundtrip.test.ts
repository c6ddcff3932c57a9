// Images written by the engine read back identically through QEMU (qemu-img convert -O raw) and
// check clean with qemu-img: images we create, and images QEMU created (and wrote) that we write to.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { FileIO } from '../../engine/io/file-io.js';
import { createImage, type CreateOptions } from '../../engine/write/create.js';
import { Qcow2Writer, type BackingGuest } from '../../engine/write/writer.js';
import { createSnapshot, deleteSnapshot, revertSnapshot } from '../../engine/write/snapshots.js';
import { prng } from '../../engine/lab/crash-states.js';
import { patternBytes } from '../../engine/lab/workloads.js';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readBytes, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-write-');
afterAll(t.cleanup);

function expectClean(file: string): void {
  const c = qemuCheck(file);
  expect(c.status, `${file}: ${c.stdout}${c.stderr}`).toBe(0);
  expect(c.json?.corruptions ?? 0).toBe(0);
  expect(c.json?.leaks ?? 0).toBe(0);
}

function qemuRaw(file: string, snapshot?: string): Buffer {
  const out = join(t.dir, `raw-${Math.random().toString(36).slice(2)}.raw`);
  const args = ['convert', '-f', 'qcow2', '-O', 'raw'];
  if (snapshot) args.push('-l', `snapshot.name=${snapshot}`);
  qemuImg(...args, file, out);
  return readFileSync(out);
}

/** Seeded random guest operations applied to the writer and to a model of the disk. */
async function randomOps(w: Qcow2Writer, model: Uint8Array, seed: number, count: number): Promise<void> {
  const rnd = prng(seed);
  const size = model.length;
  const cs = w.clusterSize;
  for (let i = 0; i < count; i++) {
    const kind = rnd();
    const off = Math.floor((rnd() * size) / 512) * 512;
    const len = Math.min(size - off, 512 * (1 + Math.floor(rnd() * ((4 * cs) / 512))));
    if (kind < 0.55) {
      const d = patternBytes(seed * 1000 + i, off, len);
      await w.write(off, d);
      model.set(d, off);
    } else if (kind < 0.65) {
      await w.writeZeroes(off, len);
      model.fill(0, off, off + len);
    } else if (kind < 0.75) {
      await w.discard(off, len);
      const a = Math.ceil(off / cs) * cs;
      const b = Math.floor((off + len) / cs) * cs;
      if (b > a) model.fill(0, a, b);
    } else if (kind < 0.9) {
      const c = Math.floor(off / cs) * cs;
      const d = patternBytes(seed * 1000 + i, c, Math.min(cs, size - c));
      await w.writeCompressed(c, d);
      model.set(d, c);
    } else {
      await w.flush();
    }
  }
}

describe('images written by the engine, judged by QEMU', () => {
  const matrix: Array<CreateOptions & { label: string; ops?: number }> = [
    { label: '512 B clusters, 16-bit refcounts', size: 2 << 20, clusterBits: 9 },
    { label: '4 KiB clusters, 1-bit refcounts', size: 4 << 20, clusterBits: 12, refcountOrder: 0 },
    { label: '4 KiB clusters, 64-bit refcounts', size: 4 << 20, clusterBits: 12, refcountOrder: 6 },
    { label: '64 KiB clusters, v2 (compat=0.10)', size: 16 << 20, clusterBits: 16, version: 2 },
    { label: '2 MiB clusters, 8-bit refcounts', size: 16 << 20, clusterBits: 21, refcountOrder: 3, ops: 15 },
  ];
  for (const [k, m] of matrix.entries()) {
    it(`created by us, random writes/zeroes/discards/compressed: ${m.label}`, async () => {
      const f = join(t.dir, `ours-${k}.qcow2`);
      const io = await FileIO.open(f, { create: true });
      await createImage(io, m);
      const w = await Qcow2Writer.open(io);
      const model = new Uint8Array(m.size);
      await randomOps(w, model, 100 + k, m.ops ?? 60);
      await w.close();
      await io.close();
      expectClean(f);
      expect(qemuRaw(f).equals(Buffer.from(model))).toBe(true);
      const info = JSON.parse(qemuImg('info', '--output=json', f)) as Record<string, any>;
      expect(info['virtual-size']).toBe(m.size);
      expect(info['cluster-size']).toBe(2 ** m.clusterBits!);
    });
  }

  it("a new image has QEMU's layout and header, and QEMU writes to it cleanly", async () => {
    const ours = join(t.dir, 'layout.qcow2');
    const io = await FileIO.open(ours, { create: true });
    await createImage(io, { size: 64 << 20, lazyRefcounts: true });
    await io.close();
    const theirs = join(t.dir, 'layout-qemu.qcow2');
    createQcow2(theirs, '64M', { lazy_refcounts: true });
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    qemuIo(ours, ['write -P 0x5a 0 128k']);
    expectClean(ours);
  });

  it("QEMU-made images with QEMU data and a QEMU snapshot: our writes, then QEMU's, read back", async () => {
    const f = join(t.dir, 'qemu-made.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x12 1M 8k', 'write -c -P 0x13 2M 4k']);
    run('qemu-img', ['snapshot', '-c', 'q1', f]);
    const model = new Uint8Array(8 << 20);
    model.fill(0x11, 0, 65536);
    model.fill(0x12, 1 << 20, (1 << 20) + 8192);
    model.fill(0x13, 2 << 20, (2 << 20) + 4096);
    const snapModel = model.slice();
    const io = await FileIO.open(f, { write: true });
    const w = await Qcow2Writer.open(io);
    expect(Buffer.from(await w.read(0, 8 << 20)).equals(Buffer.from(model))).toBe(true);
    await randomOps(w, model, 7, 50);
    await w.close();
    await io.close();
    expectClean(f);
    expect(qemuRaw(f).equals(Buffer.from(model))).toBe(true);
    expect(qemuRaw(f, 'q1').equals(Buffer.from(snapModel))).toBe(true);
    qemuIo(f, ['write -P 0x77 4k 4k']);
    model.fill(0x77, 4096, 8192);
    expectClean(f);
    expect(qemuRaw(f).equals(Buffer.from(model))).toBe(true);
  });

  it("snapshots we create, delete and revert are QEMU's snapshots too", async () => {
    const f = join(t.dir, 'snaps.qcow2');
    const io = await FileIO.open(f, { create: true });
    await createImage(io, { size: 4 << 20, clusterBits: 12 });
    const w = await Qcow2Writer.open(io);
    const model = new Uint8Array(4 << 20);
    await randomOps(w, model, 21, 30);
    await createSnapshot(w, 'first');
    const first = model.slice();
    await randomOps(w, model, 22, 30);
    await createSnapshot(w, 'second');
    const second = model.slice();
    await randomOps(w, model, 23, 30);
    await w.flush();
    expectClean(f);
    const list = run('qemu-img', ['snapshot', '-l', f]).stdout;
    expect(list).toMatch(/\bfirst\b/);
    expect(list).toMatch(/\bsecond\b/);
    expect(qemuRaw(f, 'first').equals(Buffer.from(first))).toBe(true);
    expect(qemuRaw(f, 'second').equals(Buffer.from(second))).toBe(true);
    expect(qemuRaw(f).equals(Buffer.from(model))).toBe(true);
    await deleteSnapshot(w, 'first');
    await revertSnapshot(w, 'second');
    await w.close();
    await io.close();
    expectClean(f);
    expect(run('qemu-img', ['snapshot', '-l', f]).stdout).not.toMatch(/\bfirst\b/);
    expect(qemuRaw(f).equals(Buffer.from(second))).toBe(true);
    // QEMU applies our snapshot, and we revert to QEMU's.
    run('qemu-img', ['snapshot', '-c', 'q', f]);
    qemuIo(f, ['write -P 0x99 0 4k']);
    const io2 = await FileIO.open(f, { write: true });
    const w2 = await Qcow2Writer.open(io2);
    await revertSnapshot(w2, 'q');
    await w2.close();
    await io2.close();
    expectClean(f);
    expect(qemuRaw(f).equals(Buffer.from(second))).toBe(true);
    expect(run('qemu-img', ['snapshot', '-a', 'second', f]).status).toBe(0);
    expectClean(f);
  });

  it('copy-on-write from a backing file for partial clusters', async () => {
    const back = join(t.dir, 'back.raw');
    qemuImg('create', '-q', '-f', 'raw', back, '1M');
    qemuIo(back, ['write -P 0x42 0 1M'], { format: 'raw' });
    const f = join(t.dir, 'overlay.qcow2');
    createQcow2(f, '1M', { cluster_size: 65536 }, { file: back, format: 'raw' });
    const bio = await FileIO.open(back);
    const backing: BackingGuest = { virtualSize: 1 << 20, read: (o, n) => bio.read(o, n) };
    const io = await FileIO.open(f, { write: true });
    const w = await Qcow2Writer.open(io, { backing });
    await w.write(1000, patternBytes(1, 1000, 3000));
    await w.writeZeroes(131072, 65536);
    await w.discard(262144, 65536);
    await w.close();
    await io.close();
    await bio.close();
    const model = Buffer.alloc(1 << 20, 0x42);
    Buffer.from(patternBytes(1, 1000, 3000)).copy(model, 1000);
    model.fill(0, 131072, 196608);
    model.fill(0, 262144, 327680); // v3 with a backing file: discard leaves a zero cluster
    expectClean(f);
    expect(qemuRaw(f).equals(model)).toBe(true);
  });

  it('refuses what it does not maintain, naming the field', async () => {
    const f = join(t.dir, 'extl2.qcow2');
    createQcow2(f, '1M', { extended_l2: true });
    const io = await FileIO.open(f, { write: true });
    await expect(Qcow2Writer.open(io)).rejects.toThrow(/extended L2.*header\.incompatible_features/);
    await io.close();
    const g = join(t.dir, 'corrupt.qcow2');
    createQcow2(g, '1M');
    const b = readBytes(g, 72, 8);
    b[7] = b[7]! | 2;
    const { writeBytes } = await import('../helpers/qemu.js');
    writeBytes(g, 72, b);
    const io2 = await FileIO.open(g, { write: true });
    await expect(Qcow2Writer.open(io2)).rejects.toThrow(/marked corrupt/);
    await io2.close();
    const io3 = await FileIO.open(join(t.dir, 'ours-0.qcow2'), { write: true });
    const w = await Qcow2Writer.open(io3);
    await expect(w.write(2 << 20, new Uint8Array(512))).rejects.toThrow(/beyond the virtual size/);
    await expect(w.resize(1 << 20)).rejects.toThrow(/shrinking/);
    await w.close();
    await io3.close();
  });
});
