// A failed allocating write under lazy refcounts backs out exactly its own changes: in memory alone
// when it wrote no metadata, else by a reload from the disk, whose refcounts lag behind its references
// while the dirty bit is set. Clusters mapped by earlier writes stay allocated in memory, so the next
// write does not reuse one of them (qemu-img check judges).
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileIO } from '../../engine/io/file-io.js';
import { FaultIO } from '../../engine/io/fault-io.js';
import { l2Offset } from '../../engine/format/l2-entry.js';
import { Qcow2Writer } from '../../engine/write/writer.js';
import { WriteError } from '../../engine/write/write-error.js';
import { createQcow2, qemuCheck, qemuIo, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-lazy-backout-');
afterAll(t.cleanup);

const K = 1024;
const CS = 4 * K;
const fill = (byte: number, n: number) => new Uint8Array(n).fill(byte);
let n = 0;

/** Host cluster that guest cluster `gc` maps to, as the writer's memory has it. */
async function hostCluster(w: Qcow2Writer, gc: number): Promise<number> {
  const e = await w.lookup(gc);
  expect(e, `guest cluster ${gc} has an L2 table`).not.toBeNull();
  const off = l2Offset(e!.hi, e!.lo);
  expect(off, `guest cluster ${gc} is mapped`).toBeGreaterThan(0);
  return off / CS;
}

/** The minimal reproducer, up to and including the failed write; `flush` after the first write or not. */
async function failAfterEarlierWrite(flush: boolean) {
  const f = join(t.dir, `lazy${n++}.qcow2`);
  createQcow2(f, '1M', { cluster_size: CS, lazy_refcounts: true });
  qemuIo(f, ['write -P 0x11 0 8k']);
  const io = await FileIO.open(f, { write: true });
  const fio = new FaultIO(io);
  const w = await Qcow2Writer.open(fio);
  await w.write(16 * K, fill(0x22, 8 * K));
  if (flush) await w.flush();
  // The data write of the next allocating write fails, once.
  fio.setRules([{ event: 'write_aio', errno: 'EIO', once: true }]);
  const err = await w.write(64 * K, fill(0x33, 4 * K)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WriteError);
  expect((err as Error).message).toMatch(/^guest write at 0x10000 failed: .*Input\/output error/);
  expect(fio.injected).toBe(1);
  return { f, io, w };
}

describe('a failed allocating write under lazy refcounts', () => {
  it('an earlier flushed write keeps its clusters (refcount 1 in memory), the next write takes others; qemu-img check is clean', async () => {
    const { f, io, w } = await failAfterEarlierWrite(true);
    const earlier = [await hostCluster(w, 4), await hostCluster(w, 5)];
    for (const c of earlier) expect(await w.alloc.refcount(c), `refcount of host cluster ${c}`).toBe(1);
    expect(await w.lookup(16), 'the failed write left no mapping').toSatisfy(
      (e: { hi: number; lo: number } | null) => e === null || l2Offset(e.hi, e.lo) === 0,
    );
    await w.write(512 * K, fill(0x44, 4 * K));
    expect(earlier).not.toContain(await hostCluster(w, 128));
    await w.close();
    await io.close();
    const c = qemuCheck(f);
    expect(c.status, c.stdout + c.stderr).toBe(0);
    expect(c.json?.corruptions ?? 0).toBe(0);
    expect(c.json?.leaks ?? 0).toBe(0);
    expect(
      qemuIo(f, ['read -P 0x11 0 8k', 'read -P 0x22 16k 8k', 'read -P 0 64k 4k', 'read -P 0x44 512k 4k']),
    ).not.toMatch(/Pattern verification failed/);
  });

  it('an earlier unflushed write survives too (the failed write changed no metadata on disk: backed out in memory alone); qemu-img check is clean', async () => {
    const { f, io, w } = await failAfterEarlierWrite(false);
    // The 16 KiB write was acknowledged but never flushed: its mapping lives only in the L2 cache.
    const earlier = [await hostCluster(w, 4), await hostCluster(w, 5)];
    for (const c of earlier) expect(await w.alloc.refcount(c), `refcount of host cluster ${c}`).toBe(1);
    await w.write(512 * K, fill(0x44, 4 * K));
    expect(earlier).not.toContain(await hostCluster(w, 128));
    await w.close();
    await io.close();
    const c = qemuCheck(f);
    expect(c.status, c.stdout + c.stderr).toBe(0);
    expect(c.json?.corruptions ?? 0).toBe(0);
    expect(c.json?.leaks ?? 0).toBe(0);
    const out = qemuIo(f, ['read -P 0x11 0 8k', 'read -P 0x22 16k 8k', 'read -P 0 64k 4k', 'read -P 0x44 512k 4k']);
    expect(out).not.toMatch(/Pattern verification failed/);
  });

  it('a failure of a metadata write reloads from disk, recounting the lagging lazy refcounts: earlier flushed clusters stay allocated', async () => {
    const f = join(t.dir, `lazy${n++}.qcow2`);
    createQcow2(f, '1M', { cluster_size: CS, lazy_refcounts: true });
    qemuIo(f, ['write -P 0x11 0 8k']);
    const io = await FileIO.open(f, { write: true });
    const fio = new FaultIO(io);
    const w = await Qcow2Writer.open(fio);
    await w.write(16 * K, fill(0x22, 8 * K));
    await w.flush();
    await w.write(32 * K, fill(0x33, 4 * K));
    // The flush's L2 write-back fails once: the flush reports it, the writer reloads from disk.
    fio.setRules([{ event: 'l2_update', errno: 'EIO', once: true }]);
    const err = await w.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WriteError);
    expect(fio.injected).toBe(1);
    const earlier = [await hostCluster(w, 4), await hostCluster(w, 5)];
    for (const c of earlier) expect(await w.alloc.refcount(c), `refcount of host cluster ${c}`).toBe(1);
    await w.write(512 * K, fill(0x44, 4 * K));
    expect(earlier).not.toContain(await hostCluster(w, 128));
    await w.close();
    await io.close();
    const c = qemuCheck(f);
    expect([0, 3], c.stdout + c.stderr).toContain(c.status);
    expect(c.json?.corruptions ?? 0).toBe(0);
    const out = qemuIo(f, ['read -P 0x11 0 8k', 'read -P 0x22 16k 8k', 'read -P 0x44 512k 4k']);
    expect(out).not.toMatch(/Pattern verification failed/);
  });
});
