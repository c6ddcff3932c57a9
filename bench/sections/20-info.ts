// info vs `qemu-img info --output=json`: an image with 200 internal snapshots and 8 persistent
// bitmaps, and a 3-layer backing chain with --backing-chain. Both run as processes on the same
// files (node start-up included for us), best of 3 alternating runs; outputs compared byte for byte.
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../main.js';
import { collectImageInfo } from '../../engine/image/info-file.js';
import { renderInfoJson } from '../../engine/report/info-render.js';

export const title = 'info vs qemu-img info --output=json (200 snapshots + 8 bitmaps; 3-layer chain)';

function timed(cmd: string, args: string[], cwd: string): { ms: number; out: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 1 << 28 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return { ms, out: r.stdout };
}

async function runBoth(ctx: BenchContext, label: string, args: string[]): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const q: number[] = [];
  const o: number[] = [];
  let same = true;
  for (let i = 0; i < 3; i++) {
    const a = timed('qemu-img', ['info', '--output=json', ...args], ctx.dir);
    const b = timed(bin, ['info', '--output=json', ...args], ctx.dir);
    q.push(a.ms);
    o.push(b.ms);
    same &&= a.out === b.out;
  }
  // The engine alone, in this process (no node start-up, no CLI module loading).
  const inproc: number[] = [];
  const chain = args.includes('--backing-chain');
  const file = join(ctx.dir, args[args.length - 1]!);
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    renderInfoJson(await collectImageInfo(file, { backingChain: chain }));
    inproc.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const best = (x: number[]): number => Math.min(...x);
  ctx.log(
    `${label}: qemu-img ${best(q).toFixed(0)} ms, qcow2-doctor CLI ${best(o).toFixed(0)} ms (ratio ${(best(o) / best(q)).toFixed(2)}), engine in-process ${best(inproc).toFixed(1)} ms (ratio ${(best(inproc) / best(q)).toFixed(2)}); identical JSON: ${same ? 'yes' : 'NO'}`,
  );
}

export async function run(ctx: BenchContext): Promise<void> {
  const img = join(ctx.dir, 'info-bench.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1G']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 64M', img], { stdio: 'ignore' });
  for (let i = 0; i < 8; i++) execFileSync('qemu-img', ['bitmap', '--add', img, `bitmap-${i}`]);
  for (let i = 0; i < 200; i++) execFileSync('qemu-img', ['snapshot', '-c', `snap-${i}`, img]);
  await runBoth(ctx, 'snapshots + bitmaps', ['info-bench.qcow2']);

  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', join(ctx.dir, 'info-base.raw'), '1G']);
  execFileSync('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-b',
    'info-base.raw',
    '-F',
    'raw',
    join(ctx.dir, 'info-mid.qcow2'),
  ]);
  execFileSync('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-b',
    'info-mid.qcow2',
    '-F',
    'qcow2',
    join(ctx.dir, 'info-top.qcow2'),
  ]);
  await runBoth(ctx, '--backing-chain (3 layers)', ['--backing-chain', 'info-top.qcow2']);
}
