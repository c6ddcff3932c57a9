// Repair vs `qemu-img check -r leaks` and `-r all` on the same damage: wall time of each tool on its
// own copy of the damaged image (best of 3, page cache warm), plus our engine's time in-process
// (without Node's start-up), and whether both leave a clean image. Images: 64 GiB and 256 GiB with
// preallocated metadata (1 M and 4 M clusters, every one refcounted), and a 8 GiB image with 1 GiB
// of fragmented writes and an internal snapshot. Damage: a few bytes — a leaked cluster (both
// modes) and a zeroed refcount (needs QEMU's rebuild: -r all only).
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import type { BenchContext } from '../main.js';
import { repairFile } from '../../engine/repair/index.js';

export const title = 'repair vs qemu-img check -r leaks / -r all (wall time)';

function u64(file: string, off: number): bigint {
  const b = Buffer.alloc(8);
  const fd = execFileSync('node', [
    '-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},'r');const b=Buffer.alloc(8);fs.readSync(fd,b,0,8,${off});process.stdout.write(b.toString('hex'))`,
  ]).toString();
  b.write(fd, 'hex');
  return b.readBigUInt64BE();
}

function patch(file: string, off: number, bytes: Buffer): void {
  execFileSync('node', [
    '-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},'r+');fs.writeSync(fd,Buffer.from('${bytes.toString('hex')}','hex'),0,${bytes.length},${off})`,
  ]);
}

/** Copy keeping holes (preallocated images are mostly holes; a plain copy would write them all out). */
function copyFileSync(src: string, dst: string): void {
  rmSync(dst, { force: true });
  execFileSync('cp', ['--sparse=always', src, dst]);
}

function timed(cmd: string, args: string[]): { ms: number; status: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, status: r.status ?? -1 };
}

function clean(file: string): boolean {
  return spawnSync('qemu-img', ['check', '-q', file]).status === 0;
}

/** Damage: zero the second L2 entry of the first L2 table (its data cluster leaks). */
function damageLeak(file: string): void {
  const l1 = Number(u64(file, 40));
  const l2 = Number(u64(file, l1) & 0x00fffffffffffe00n);
  patch(file, l2 + 8, Buffer.alloc(8));
}

/** Damage: zero the refcount of the first L2 entry's data cluster (QEMU must rebuild). */
function damageRefcount(file: string): void {
  const l1 = Number(u64(file, 40));
  const l2 = Number(u64(file, l1) & 0x00fffffffffffe00n);
  const data = Number(u64(file, l2) & 0x00fffffffffffe00n);
  const reft = Number(u64(file, 48));
  const cs = 65536;
  const perBlock = cs / 2;
  const c = data / cs;
  const rb = Number(u64(file, reft + 8 * Math.floor(c / perBlock)));
  patch(file, rb + 2 * (c % perBlock), Buffer.alloc(2));
}

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const images: Array<{ label: string; build: (f: string) => void }> = [
    {
      label: '64 GiB preallocated metadata',
      build: (f) => execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', f, '64G']),
    },
    {
      label: '256 GiB preallocated metadata',
      build: (f) =>
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', f, '256G']),
    },
    {
      label: '8 GiB, 1 GiB fragmented writes + snapshot',
      build: (f) => {
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', f, '8G']);
        const cmds: string[] = [];
        for (let i = 0; i < 16384; i++) cmds.push(`write -P ${i % 250} ${((i * 7919) % 131072) * 65536} 64k`);
        spawnSync('qemu-io', ['-f', 'qcow2', f], {
          input: `${cmds.join('\n')}\nquit\n`,
          stdio: ['pipe', 'ignore', 'inherit'],
        });
        execFileSync('qemu-img', ['snapshot', '-c', 's1', f]);
        spawnSync('qemu-io', ['-f', 'qcow2', f], {
          input: `${cmds
            .slice(0, 2000)
            .map((c) => c.replace(/-P \d+/, '-P 7'))
            .join('\n')}\nquit\n`,
          stdio: ['pipe', 'ignore', 'inherit'],
        });
      },
    },
  ];
  ctx.log('| image | damage | mode | qemu-img check -r | qcow2-doctor check -r | ratio | engine only | both clean |');
  ctx.log('|---|---|---|---|---|---|---|---|');
  for (const img of images) {
    const base = join(ctx.dir, 'repair-base.qcow2');
    img.build(base);
    for (const [damage, fn, modes] of [
      ['leaked cluster', damageLeak, ['leaks', 'all']],
      ['zeroed refcount', damageRefcount, ['all']],
    ] as const) {
      const damaged = join(ctx.dir, 'repair-damaged.qcow2');
      copyFileSync(base, damaged);
      fn(damaged);
      for (const mode of modes) {
        const q: number[] = [];
        const o: number[] = [];
        let bothClean = true;
        const work = join(ctx.dir, 'repair-work.qcow2');
        for (let i = 0; i < 3; i++) {
          copyFileSync(damaged, work);
          q.push(timed('qemu-img', ['check', '-r', mode, work]).ms);
          bothClean &&= clean(work);
          copyFileSync(damaged, work);
          o.push(timed(bin, ['check', '-r', mode, '--no-journal', work]).ms);
          bothClean &&= clean(work);
        }
        copyFileSync(damaged, work);
        const e0 = performance.now();
        await repairFile({ image: work, mode, journal: false });
        const engine = performance.now() - e0;
        const qb = Math.min(...q);
        const ob = Math.min(...o);
        ctx.log(
          `| ${img.label} (${(statSync(base).size / 2 ** 30).toFixed(1)} GiB file) | ${damage} | -r ${mode} | ${qb.toFixed(0)} ms | ${ob.toFixed(0)} ms | ${(ob / qb).toFixed(2)} | ${engine.toFixed(0)} ms | ${bothClean ? 'yes' : 'NO'} |`,
        );
        rmSync(work, { force: true });
      }
      rmSync(damaged, { force: true });
    }
    rmSync(base, { force: true });
  }
  ctx.log('');
  ctx.log(
    "ratio = our wall time (CLI, incl. Node start-up, first-pass check, plan, ordered apply, re-check) / qemu-img's.",
  );
}
