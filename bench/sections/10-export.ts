// export vs `qemu-img convert -O raw` on a 4 GiB image with mixed allocation: plain data (two host
// runs), zero clusters (ZERO_ALLOC and ZERO_PLAIN), discarded ranges, compressed clusters and
// unallocated space. Both tools run as processes on the same file, three times each (alternating, page
// cache warm, `sync` before each), best time kept; the outputs are compared byte for byte.
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rmSync, statSync } from 'node:fs';
import type { BenchContext } from '../main.js';

export const title = 'export vs qemu-img convert -O raw (4 GiB image, mixed allocation)';

const M = 1024 * 1024;

function qemuIo(file: string, cmds: string[]): void {
  const args = ['-f', 'qcow2'];
  for (const c of cmds) args.push('-c', c);
  execFileSync('qemu-io', [...args, file], { stdio: 'ignore' });
}

function timed(cmd: string, args: string[]): number {
  // Start each run with no dirty pages left by the previous one.
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return ms;
}

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.js');
  const img = join(ctx.dir, 'export-bench.qcow2');
  const ours = join(ctx.dir, 'export-ours.raw');
  const theirs = join(ctx.dir, 'export-qemu.raw');

  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '4G']);
  const data: string[] = [];
  for (let i = 0; i < 4; i++) data.push(`write -P 0x${(0x11 + i).toString(16)} ${i * 256}M 256M`); // 1 GiB of data
  data.push('write -P 0x41 1536M 512M'); // 512 MiB more, after a gap
  data.push('write -z 256M 64M'); // ZERO_ALLOC over data
  data.push('write -z -u 512M 32M'); // ZERO_PLAIN over data
  data.push('discard 640M 64M');
  data.push('write -z 1100M 100M'); // zero over unallocated
  data.push('write -c -P 0x61 3G 128M'); // compressed (zlib)
  data.push('write -P 0x71 3500M 1M');
  qemuIo(img, data);
  const size = statSync(img).size;
  ctx.log(`image: 4 GiB virtual, ${(size / M).toFixed(0)} MiB file (1.5 GiB data, 128 MiB compressed, zero and discarded ranges)`);

  const runs: { ours: number[]; qemu: number[] } = { ours: [], qemu: [] };
  for (let i = 0; i < 3; i++) {
    rmSync(theirs, { force: true });
    runs.qemu.push(timed('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', img, theirs]));
    rmSync(ours, { force: true });
    runs.ours.push(timed('node', [bin, 'export', img, ours]));
  }
  const same = spawnSync('cmp', ['-s', ours, theirs]).status === 0;
  const best = (a: number[]) => Math.min(...a);
  const q = best(runs.qemu);
  const o = best(runs.ours);
  ctx.log(`qemu-img convert -O raw : ${(q / 1000).toFixed(2)} s  (runs: ${runs.qemu.map((x) => (x / 1000).toFixed(2)).join(', ')})`);
  ctx.log(`qcow2-doctor export     : ${(o / 1000).toFixed(2)} s  (runs: ${runs.ours.map((x) => (x / 1000).toFixed(2)).join(', ')})`);
  ctx.log(`ratio export/qemu-img   : ${(o / q).toFixed(2)}  (goal: <= 1.00)`);
  ctx.log(`outputs identical       : ${same ? 'yes' : 'NO'}`);
  const alloc = (f: string) => (statSync(f).blocks * 512) / M;
  ctx.log(`output allocation       : ours ${alloc(ours).toFixed(0)} MiB, qemu-img ${alloc(theirs).toFixed(0)} MiB (sparse)`);
  for (const f of [img, ours, theirs]) rmSync(f, { force: true });
}
