// The write path: (1) flushes per 1000 allocating 4 KiB writes, ordered (cache dependencies,
// barriers only where an order must hold) vs a flush after every metadata update; (2) write
// throughput side by side with qemu-io on the same workload and the same kind of file.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../main.js';
import { FileIO } from '../../engine/io/file-io.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { RecordingIO } from '../../engine/io/recording-io.js';
import { createImage } from '../../engine/write/create.js';
import { Qcow2Writer } from '../../engine/write/writer.js';
import type { WriteOrdering } from '../../engine/write/table-cache.js';

export const title = 'write path: flushes per 1000 allocating writes, throughput vs qemu-io';

const K = 1024;
const M = 1024 * K;
const N = 1000;

interface Workload {
  label: string;
  /** Guest offset of write i (4 KiB each). */
  offset(i: number): number;
}

const WORKLOADS: Workload[] = [
  { label: `${N} allocating 4 KiB writes (one per 64 KiB cluster)`, offset: (i) => i * 64 * K },
  { label: `${N} sequential 4 KiB writes (1 in 16 allocates)`, offset: (i) => i * 4 * K },
];

async function flushesFor(ordering: WriteOrdering, w: Workload): Promise<{ flushes: number; alloc: number }> {
  const mem = new MemoryIO();
  await createImage(mem, { size: 1024 * M });
  const rec = new RecordingIO(mem);
  const writer = await Qcow2Writer.open(rec, { ordering });
  const buf = new Uint8Array(4 * K).fill(0x5a);
  for (let i = 0; i < N; i++) await writer.write(w.offset(i), buf);
  await writer.close();
  return { flushes: rec.flushCount, alloc: writer.stats.allocatingWrites };
}

async function oursOnFile(file: string, w: Workload): Promise<number> {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1G']);
  const t0 = process.hrtime.bigint();
  const io = await FileIO.open(file, { write: true });
  const writer = await Qcow2Writer.open(io);
  const buf = new Uint8Array(4 * K).fill(0x5a);
  for (let i = 0; i < N; i++) await writer.write(w.offset(i), buf);
  await writer.close();
  await io.close();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function qemuOnFile(file: string, w: Workload): number {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1G']);
  const args = ['-f', 'qcow2', '-t', 'writeback'];
  for (let i = 0; i < N; i++) args.push('-c', `write -q -P 0x5a ${w.offset(i)} 4k`);
  args.push('-c', 'flush', file);
  const t0 = process.hrtime.bigint();
  const r = spawnSync('qemu-io', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`qemu-io: ${r.stderr}`);
  return ms;
}

export async function run(ctx: BenchContext): Promise<void> {
  ctx.log('Flushes issued (image on a recording backend, 64 KiB clusters, final close included):');
  ctx.log('');
  ctx.log(
    '| workload | allocating writes | ordered | flush after every update | per 1000 allocating: ordered / every update |',
  );
  ctx.log('|---|---|---|---|---|');
  for (const w of WORKLOADS) {
    const o = await flushesFor('ordered', w);
    const e = await flushesFor('writethrough', w);
    const per = (f: number) => ((f / Math.max(1, o.alloc)) * 1000).toFixed(0);
    ctx.log(`| ${w.label} | ${o.alloc} | ${o.flushes} | ${e.flushes} | ${per(o.flushes)} / ${per(e.flushes)} |`);
  }
  ctx.log('');
  ctx.log(
    'Throughput on a file (qemu-img-created 1 GiB image, page cache, best of 3; qemu-io -t writeback, includes its process start):',
  );
  ctx.log('');
  ctx.log('| workload | qcow2-doctor | qemu-io | ratio (ours/qemu time) |');
  ctx.log('|---|---|---|---|');
  for (const w of WORKLOADS) {
    const ours: number[] = [];
    const qemu: number[] = [];
    for (let r = 0; r < 3; r++) {
      const f1 = join(ctx.dir, 'write-ours.qcow2');
      const f2 = join(ctx.dir, 'write-qemu.qcow2');
      qemu.push(qemuOnFile(f2, w));
      ours.push(await oursOnFile(f1, w));
      rmSync(f1, { force: true });
      rmSync(f2, { force: true });
    }
    const o = Math.min(...ours);
    const q = Math.min(...qemu);
    const mbps = (ms: number) => ((N * 4 * K) / M / (ms / 1000)).toFixed(1);
    ctx.log(
      `| ${w.label} | ${o.toFixed(0)} ms (${mbps(o)} MiB/s) | ${q.toFixed(0)} ms (${mbps(q)} MiB/s) | ${(o / q).toFixed(2)} |`,
    );
  }
}
