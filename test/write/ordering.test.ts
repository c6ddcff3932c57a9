// The order the write path puts its requests in (read from the recorded log), its flush economy,
// the reuse rule for freed clusters, and lazy refcounts with repair on open.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { FileIO } from '../../engine/io/file-io.js';
import { RecordingIO } from '../../engine/io/recording-io.js';
import { createImage } from '../../engine/write/create.js';
import { Qcow2Writer } from '../../engine/write/writer.js';
import type { WriteOrdering } from '../../engine/write/table-cache.js';
import { patternBytes } from '../../engine/lab/workloads.js';
import { qemuCheck, qemuCheckHuman, qemuImg, readBytes, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-order-');
afterAll(t.cleanup);

async function fresh(size: number, clusterBits: number, ordering: WriteOrdering = 'ordered') {
  const mem = new MemoryIO();
  await createImage(mem, { size, clusterBits });
  const rec = new RecordingIO(mem);
  const w = await Qcow2Writer.open(rec, { ordering });
  return { mem, rec, w };
}

const isWriteAt = (e: { kind: string }, off: number): boolean =>
  e.kind === 'write' && (e as unknown as { offset: number }).offset === off;

describe('ordering of the write path', () => {
  it('refcount before L2 table before L1 entry; data durable before the L2 entry maps it', async () => {
    const { rec, w } = await fresh(1 << 20, 12);
    await w.write(0, patternBytes(1, 0, 4096));
    await w.flush();
    const log = rec.log;
    const kinds = log.map((e) => (e.kind === 'write' ? `w@${e.offset.toString(16)}` : e.kind));
    // Cluster 4 (0x4000) becomes the L2 table, cluster 5 (0x5000) the data; L1 is at 0x3000.
    const l2Fill = log.findIndex((e) => isWriteAt(e, 0x4000));
    const l1 = log.findIndex((e) => isWriteAt(e, 0x3000));
    const data = log.findIndex((e) => isWriteAt(e, 0x5000));
    const l2Map = log.findLastIndex((e) => isWriteAt(e, 0x4000));
    const refblock = log.findIndex((e) => isWriteAt(e, 0x2000));
    const flushBetween = (a: number, b: number) => log.slice(a + 1, b).some((e) => e.kind === 'flush');
    expect(refblock, kinds.join(' ')).toBeGreaterThanOrEqual(0);
    expect(flushBetween(refblock, l2Fill)).toBe(true); // allocate before reference
    expect(flushBetween(l2Fill, l1)).toBe(true); // fill before link
    expect(l2Map).toBeGreaterThan(data);
    expect(flushBetween(data, l2Map)).toBe(true); // data before mapping
    expect(log[log.length - 1]!.kind).toBe('flush');
  });

  it('a discard reaches the disk before the refcount drops, and the freed cluster waits for a flush', async () => {
    const { rec, w } = await fresh(1 << 20, 12);
    await w.write(0, patternBytes(1, 0, 8192)); // clusters 5 and 6
    await w.flush();
    const from = rec.log.length;
    await w.discard(0, 4096);
    await w.write(65536, patternBytes(2, 65536, 4096)); // must not land in cluster 5 yet
    await w.flush();
    const log = rec.log.slice(from);
    expect(log.some((e) => isWriteAt(e, 0x5000))).toBe(false);
    const l2 = log.findIndex((e) => isWriteAt(e, 0x4000));
    const rb = log.findIndex((e) => isWriteAt(e, 0x2000));
    expect(l2).toBeGreaterThanOrEqual(0);
    expect(rb).toBeGreaterThan(l2);
    expect(log.slice(l2 + 1, rb).some((e) => e.kind === 'flush')).toBe(true);
    // After the flush the freed cluster is reused.
    const from2 = rec.log.length;
    await w.write(131072, patternBytes(3, 131072, 4096));
    expect(rec.log.slice(from2).some((e) => isWriteAt(e, 0x5000))).toBe(true);
  });

  it('one flush per write-back batch, not one per update', async () => {
    const counts: Record<string, number> = {};
    for (const ordering of ['ordered', 'writethrough'] as const) {
      const { rec, w } = await fresh(64 << 20, 16, ordering);
      for (let i = 0; i < 200; i++) await w.write(i * 65536, patternBytes(i, i * 65536, 4096));
      await w.flush();
      expect(w.stats.allocatingWrites).toBe(200);
      counts[ordering] = rec.flushCount;
    }
    expect(counts.ordered!).toBeLessThanOrEqual(6);
    expect(counts.writethrough!).toBeGreaterThanOrEqual(400);
  });
});

describe('lazy refcounts', () => {
  it('dirty bit while writing, clean after close; a crash leaves what QEMU repairs, and we repair it too', async () => {
    const f = join(t.dir, 'lazy.qcow2');
    const io = await FileIO.open(f, { create: true });
    await createImage(io, { size: 1 << 20, clusterBits: 12, lazyRefcounts: true });
    const w = await Qcow2Writer.open(io);
    expect(w.lazy).toBe(true);
    await w.write(0, patternBytes(1, 0, 8192));
    await w.flush();
    expect(readBytes(f, 79, 1)[0]! & 1).toBe(1); // dirty bit on disk
    // "Crash": the process goes away without close.
    await io.close();
    const crashed = join(t.dir, 'lazy-crashed.qcow2');
    copyFileSync(f, crashed);
    const c = qemuCheckHuman(crashed);
    expect(c.status).toBe(2); // as iotest 039: refcounts lag behind references
    expect(c.stderr).toMatch(/ERROR cluster \d+ refcount=0 reference=1/);
    // Our open repairs (as QEMU's read-write open does).
    const io2 = await FileIO.open(crashed, { write: true });
    const w2 = await Qcow2Writer.open(io2);
    expect(w2.dirty).toBe(false);
    await w2.write(8192, patternBytes(2, 8192, 4096));
    await w2.close();
    await io2.close();
    expect(readBytes(crashed, 79, 1)[0]! & 1).toBe(0);
    const ok = qemuCheck(crashed);
    expect(ok.status).toBe(0);
    const raw = join(t.dir, 'lazy.raw');
    qemuImg('convert', '-O', 'raw', crashed, raw);
    const want = Buffer.alloc(1 << 20);
    Buffer.from(patternBytes(1, 0, 8192)).copy(want, 0);
    Buffer.from(patternBytes(2, 8192, 4096)).copy(want, 8192);
    expect(readFileSync(raw).equals(want)).toBe(true);
    // And QEMU repairs our dirty image on its own read-write open.
    const q = run('qemu-io', ['-f', 'qcow2', '-c', 'read 0 512', f]);
    expect(q.status).toBe(0);
    expect(q.stderr).toMatch(/Repairing cluster/);
    expect(qemuCheck(f).status).toBe(0);
  });
});
