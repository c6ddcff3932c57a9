// Repair vs `qemu-img check -r leaks` and `-r all` on the same damage: wall and CPU time of each tool
// on its own copy of the damaged image (best of 3 alternating runs, page cache warm; 1 for the
// 4 TiB and 16 TiB images), our CLI with its undo journal on (the default), plus our engine's time
// in-process (without Node's start-up, journal off), and whether both leave a clean image. Images:
// 1 TiB and 4 TiB with 64 KiB clusters and 16 TiB with 2 MiB clusters, all preallocation=metadata
// (every cluster refcounted), and an 8 GiB image with 1 GiB of fragmented writes and an internal
// snapshot. Damage: five leaked clusters (both modes) and a zeroed refcount (needs QEMU's rebuild:
// -r all only; on the smaller images).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import type { BenchContext } from '../main.js';
import { repairFile } from '../../engine/repair/index.js';
import { bestOf, ratio, timeCommand } from '../measure.js';

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

function clean(file: string): boolean {
  return spawnSync('qemu-img', ['check', '-q', file]).status === 0;
}

/** Damage: zero one L2 entry in each of five L2 tables (five data clusters leak). */
function damageLeak(file: string): void {
  const l1 = Number(u64(file, 40));
  const l1Size = Number(u64(file, 32) & 0xffffffffn);
  for (let i = 0; i < 5; i++) {
    const slot = Math.floor((i * l1Size) / 5);
    const l2 = Number(u64(file, l1 + 8 * slot) & 0x00fffffffffffe00n);
    if (l2) patch(file, l2 + 8 * (1 + i), Buffer.alloc(8));
  }
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
  const prealloc =
    (size: string, cluster = '64K') =>
    (f: string) =>
      execFileSync('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        `cluster_size=${cluster},preallocation=metadata`,
        f,
        size,
      ]);
  // ext4 caps files at 16 TiB - 4 KiB, below the 16 TiB image's length: it lives on tmpfs (/dev/shm), sparse.
  const shm = existsSync('/dev/shm') ? '/dev/shm' : ctx.dir;
  const images: Array<{ label: string; dir: string; runs: number; refcount: boolean; build: (f: string) => void }> = [
    { label: '1 TiB preallocated metadata', dir: ctx.dir, runs: 3, refcount: false, build: prealloc('1T') },
    { label: '4 TiB preallocated metadata', dir: ctx.dir, runs: 1, refcount: false, build: prealloc('4T') },
    {
      label: '16 TiB, 2 MiB clusters, preallocated metadata',
      dir: shm,
      runs: 1,
      refcount: false,
      build: prealloc('16T', '2M'),
    },
    { label: '64 GiB preallocated metadata', dir: ctx.dir, runs: 3, refcount: true, build: prealloc('64G') },
    {
      label: '8 GiB, 1 GiB fragmented writes + snapshot',
      dir: ctx.dir,
      runs: 3,
      refcount: true,
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
  ctx.log(
    '| image | damage | mode | qemu-img check -r | qcow2-doctor check -r (journal on) | wall ratio | CPU ratio | engine only (no journal) | both clean |',
  );
  ctx.log('|---|---|---|---|---|---|---|---|---|');
  for (const img of images) {
    const base = join(img.dir, `repair-base-${process.pid}.qcow2`);
    const damaged = join(img.dir, `repair-damaged-${process.pid}.qcow2`);
    const work = join(img.dir, `repair-work-${process.pid}.qcow2`);
    const dropJournals = (): void => {
      for (const f of readdirSync(img.dir))
        if (f.startsWith(`repair-work-${process.pid}.qcow2.repair-journal`)) rmSync(join(img.dir, f), { force: true });
    };
    try {
      img.build(base);
      const damages: Array<[string, (f: string) => void, Array<'leaks' | 'all'>]> = [
        ['five leaked clusters', damageLeak, ['leaks', 'all']],
      ];
      if (img.refcount) damages.push(['zeroed refcount', damageRefcount, ['all']]);
      for (const [damage, fn, modes] of damages) {
        copyFileSync(base, damaged);
        fn(damaged);
        for (const mode of modes) {
          let bothClean = true;
          const fresh = (): void => {
            dropJournals();
            copyFileSync(damaged, work);
          };
          const check = (t: { ms: number; cpuMs: number; status: number }) => {
            bothClean &&= clean(work);
            return t;
          };
          const [q, o] = bestOf(img.runs, [
            { before: fresh, run: () => check(timeCommand('qemu-img', ['check', '-r', mode, work])) },
            { before: fresh, run: () => check(timeCommand(bin, ['check', '-r', mode, work])) },
          ]);
          fresh();
          const e0 = performance.now();
          await repairFile({ image: work, mode, journal: false });
          const engine = performance.now() - e0;
          ctx.log(
            `| ${img.label} (${(statSync(base).size / 2 ** 30).toFixed(1)} GiB file) | ${damage} | -r ${mode} | ${q!.ms.toFixed(0)} ms (${q!.cpuMs.toFixed(0)} ms CPU) | ${o!.ms.toFixed(0)} ms (${o!.cpuMs.toFixed(0)} ms CPU) | ${ratio(o!.ms, q!.ms)} | ${ratio(o!.cpuMs, q!.cpuMs)} | ${engine.toFixed(0)} ms | ${bothClean ? 'yes' : 'NO'} |`,
          );
        }
      }
    } finally {
      dropJournals();
      for (const f of [base, damaged, work]) rmSync(f, { force: true });
    }
  }
  ctx.log('');
  ctx.log(
    "ratio = ours / qemu-img's; ours = the CLI as a user runs it: Node's start-up, first-pass check, plan, undo journal, ordered apply, re-check. Goal: ≤ 0.25.",
  );
}
