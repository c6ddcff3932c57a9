// export vs `qemu-img convert -O raw` on a 4 GiB image with mixed allocation: plain data (two host
// runs), zero clusters (ZERO_ALLOC and ZERO_PLAIN), discarded ranges, compressed clusters and
// unallocated space. Both tools run as processes on the same file, four times each (alternating who goes first, page
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

interface Timing {
  wall: number;
  cpu: number;
}

/** Wall and CPU (user + system) seconds of one run, measured by bash's `time`. */
function timed(cmd: string, args: string[]): Timing {
  // Start each run with no dirty pages left by the previous one, and let the disk settle.
  spawnSync('sync');
  spawnSync('sleep', ['1']);
  const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync(
    'bash',
    ['-c', `TIMEFORMAT='%R %U %S'; time ${quoted} >/dev/null 2>/tmp/qcow2-doctor-bench-err.$$`],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status} ${r.stderr}`);
  const m = /([\d.]+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`could not time ${cmd}: ${r.stderr}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]) };
}

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
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
  ctx.log(
    `image: 4 GiB virtual, ${(size / M).toFixed(0)} MiB file (1.5 GiB data, 128 MiB compressed, zero and discarded ranges)`,
  );

  const runs: { ours: Timing[]; qemu: Timing[] } = { ours: [], qemu: [] };
  const once = {
    qemu: () => runs.qemu.push(timed('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', img, theirs])),
    ours: () => runs.ours.push(timed(bin, ['export', img, ours])),
  };
  // The run that follows another pays for its writeback: alternate who goes first.
  for (let i = 0; i < 4; i++) {
    for (const who of i % 2 === 0 ? (['qemu', 'ours'] as const) : (['ours', 'qemu'] as const)) {
      rmSync(who === 'qemu' ? theirs : ours, { force: true });
      once[who]();
    }
  }
  const same = spawnSync('cmp', ['-s', ours, theirs]).status === 0;
  const best = (a: Timing[], k: keyof Timing) => Math.min(...a.map((t) => t[k]));
  const list = (a: Timing[]) => a.map((t) => `${t.wall.toFixed(2)}/${t.cpu.toFixed(2)}`).join(', ');
  for (const k of ['wall', 'cpu'] as const) {
    const q = best(runs.qemu, k);
    const o = best(runs.ours, k);
    ctx.log(
      `${k === 'wall' ? 'wall time' : 'CPU time (user+sys)'}: qemu-img convert -O raw ${q.toFixed(2)} s, qcow2-doctor export ${o.toFixed(2)} s, ratio ${(o / q).toFixed(2)} (goal: <= 1.00)`,
    );
  }
  ctx.log(`runs (wall/cpu s): qemu-img ${list(runs.qemu)}; ours ${list(runs.ours)}`);
  ctx.log("(best of 4 each, alternating order; wall time depends on the machine's load, CPU time much less)");
  ctx.log(`outputs identical: ${same ? 'yes' : 'NO'}`);
  const alloc = (f: string) => (statSync(f).blocks * 512) / M;
  ctx.log(`output allocation: ours ${alloc(ours).toFixed(0)} MiB, qemu-img ${alloc(theirs).toFixed(0)} MiB (sparse)`);
  for (const f of [img, ours, theirs]) rmSync(f, { force: true });
}
