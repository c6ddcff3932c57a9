// check vs `qemu-img check` on the same files: wall time and CPU time (user+sys; each the best of
// 5 runs, alternating, page cache warm; CPU time is the steadier figure on a shared machine), peak
// memory (max RSS from /usr/bin/time, else /proc VmHWM), and the engine's own time in-process
// (without Node's start-up), plain and with the role and guest maps the app asks for. Images:
// 1 TiB and 4 TiB with 64 KiB clusters and 16 TiB with 2 MiB clusters (all preallocation=metadata),
// a 64 GiB image with fragmented random writes and 3 internal snapshots, and its compressed copy.
// Both tools must give the same verdict.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../main.js';
import { checkFile } from '../../engine/check/index.js';

export const title = 'check vs qemu-img check (wall and CPU time, peak memory)';

const TIME = '/usr/bin/time';

interface Sample {
  ms: number;
  /** user+sys CPU time (ms), from /usr/bin/time; NaN without it. */
  cpuMs: number;
  rssKiB: number;
  stdout: string;
}

const BASH = '/bin/bash';

/**
 * Run a command, return wall time, max RSS and stdout (exit codes 0..3 are verdicts, not failures).
 * Wall time is taken by bash's `time` right around the command: timed from here, it would also
 * count this process noticing the child's exit (a few ms on a VM, the same for both tools, which
 * skews the ratio against the faster one).
 */
async function measure(cmd: string, args: string[]): Promise<Sample> {
  const useTime = existsSync(TIME);
  const useBash = existsSync(BASH);
  const inner = useTime ? [TIME, '-f', '__RSS__%M %U %S', cmd, ...args] : [cmd, ...args];
  const argv = useBash ? [BASH, '-c', 'TIMEFORMAT="__WALL__%3R"; time "$@"', 'bash', ...inner] : inner;
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let hwm = 0;
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    // Without /usr/bin/time: poll the child's VmHWM.
    const timer = useTime
      ? undefined
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
            if (m) hwm = Math.max(hwm, Number(m[1]));
          } catch {
            /* exited */
          }
        }, 5);
    p.on('error', reject);
    p.on('close', (code) => {
      if (timer) clearInterval(timer);
      const wall = /__WALL__([\d.]+)/.exec(err);
      const ms = wall ? Number(wall[1]) * 1000 : Number(process.hrtime.bigint() - t0) / 1e6;
      const m = /__RSS__(\d+) ([\d.]+) ([\d.]+)/.exec(err);
      if (code === null || code > 3)
        return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(0, 500)}`));
      resolve({
        ms,
        cpuMs: m ? (Number(m[2]) + Number(m[3])) * 1000 : NaN,
        rssKiB: m ? Number(m[1]) : hwm,
        stdout: out,
      });
    });
  });
}

function qemuIoScript(file: string, cmds: string[]): void {
  // One qemu-io process reading commands from stdin (thousands of writes).
  spawnSync('qemu-io', ['-f', 'qcow2', file], {
    input: `${cmds.join('\n')}\nquit\n`,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
}

/** Deterministic pseudo-random generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

function buildFragmented(file: string): void {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '64G']);
  const rand = rng(12345);
  const cl = 64 * 1024;
  const clusters = (64 * 1024 * 1024 * 1024) / cl;
  const round = (n: number, pattern: number): string[] => {
    const cmds: string[] = [];
    for (let i = 0; i < n; i++)
      cmds.push(`write -P 0x${(pattern + (i % 7)).toString(16)} ${Math.floor(rand() * clusters) * cl} 16k`);
    return cmds;
  };
  for (let s = 1; s <= 3; s++) {
    qemuIoScript(file, round(6000, 0x10 * s));
    execFileSync('qemu-img', ['snapshot', '-c', `snap${s}`, file]);
  }
  qemuIoScript(file, round(6000, 0x50));
}

const MiB = 1024;
/** Runs per tool and image, alternating; the best of each side is compared (wall time here varies ±10% from one minute to the next). */
const RUNS = 5;

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const images: Array<{ label: string; file: string; build: () => void }> = [
    {
      label: '1 TiB, 64 KiB clusters, preallocation=metadata',
      file: join(ctx.dir, 'check-1t.qcow2'),
      build() {
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', this.file, '1T']);
      },
    },
    {
      label: '4 TiB, 64 KiB clusters, preallocation=metadata',
      file: join(ctx.dir, 'check-4t.qcow2'),
      build() {
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', this.file, '4T']);
      },
    },
    // ext4 caps files at 16 TiB - 4 KiB, below this image's length: it lives on tmpfs (/dev/shm), sparse.
    {
      label: '16 TiB, 2 MiB clusters, preallocation=metadata',
      file: join(existsSync('/dev/shm') ? '/dev/shm' : ctx.dir, `check-16t-${process.pid}.qcow2`),
      build() {
        execFileSync('qemu-img', [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          'cluster_size=2M,preallocation=metadata',
          this.file,
          '16T',
        ]);
      },
    },
    {
      label: '64 GiB, 24000 random writes, 3 internal snapshots',
      file: join(ctx.dir, 'check-frag.qcow2'),
      build() {
        buildFragmented(this.file);
      },
    },
    {
      label: 'its compressed copy (qemu-img convert -c)',
      file: join(ctx.dir, 'check-frag-c.qcow2'),
      build() {
        execFileSync('qemu-img', ['convert', '-c', '-O', 'qcow2', join(ctx.dir, 'check-frag.qcow2'), this.file]);
      },
    },
  ];
  ctx.log(
    `| image | file size | qemu-img wall | ours wall | wall ratio | qemu-img CPU | ours CPU | CPU ratio | engine only | engine with maps | qemu peak RSS | our peak RSS | same verdict |`,
  );
  ctx.log(`|---|---|---|---|---|---|---|---|---|---|---|---|---|`);
  const ratios: number[] = [];
  for (const img of images) {
    const t0 = Date.now();
    img.build();
    const buildS = ((Date.now() - t0) / 1000).toFixed(1);
    const qemu: Sample[] = [];
    const ours: Sample[] = [];
    await measure('qemu-img', ['check', '--output=json', img.file]); // warm the page cache
    for (let i = 0; i < RUNS; i++) {
      qemu.push(await measure('qemu-img', ['check', '--output=json', img.file]));
      // A run with no output is a broken run (e.g. dist/ being rebuilt meanwhile): try again.
      // The launcher itself, as a user runs `qcow2-doctor check` (its #! line sets up Node).
      let o = await measure(bin, ['check', '--output=json', img.file]);
      for (let retry = 0; retry < 2 && o.stdout === ''; retry++)
        o = await measure(bin, ['check', '--output=json', img.file]);
      if (o.stdout === '') throw new Error(`qcow2-doctor check ${img.file} printed nothing`);
      ours.push(o);
    }
    const e0 = performance.now();
    await checkFile(img.file);
    const engineMs = performance.now() - e0;
    // What the app asks for: the same check with the role and guest maps.
    const m0 = performance.now();
    await checkFile(img.file, { roleMap: true, guestMap: true });
    const mapsMs = performance.now() - m0;
    const best = (a: Sample[]) => a.reduce((x, y) => (y.ms < x.ms ? y : x));
    const q = best(qemu);
    const o = best(ours);
    const qj = JSON.parse(q.stdout) as Record<string, unknown>;
    const oj = JSON.parse(o.stdout) as Record<string, unknown>;
    delete oj.anomalies;
    const same = JSON.stringify(qj) === JSON.stringify(oj);
    const ratio = o.ms / q.ms;
    ratios.push(ratio);
    const cpu = (a: Sample[]) => Math.min(...a.map((s) => s.cpuMs));
    const qc = cpu(qemu); // /usr/bin/time counts in 10 ms steps: a tiny check may read 0
    const oc = cpu(ours);
    const size = statSync(img.file).size;
    if (!img.file.includes('frag.qcow2')) rmSync(img.file, { force: true });
    ctx.log(
      `| ${img.label} (built in ${buildS} s) | ${(size / 2 ** 30).toFixed(1)} GiB | ${q.ms.toFixed(0)} ms | ${o.ms.toFixed(0)} ms | ${ratio.toFixed(2)} | ${qc.toFixed(0)} ms | ${oc.toFixed(0)} ms | ${qc > 0 ? (oc / qc).toFixed(2) : '—'} | ${engineMs.toFixed(0)} ms | ${mapsMs.toFixed(0)} ms | ${(Math.max(...qemu.map((s) => s.rssKiB)) / MiB).toFixed(0)} MiB | ${(Math.max(...ours.map((s) => s.rssKiB)) / MiB).toFixed(0)} MiB | ${same ? 'yes' : 'NO'} |`,
    );
  }
  // Node's own start, as the launcher runs it (NODE_EXTRA_CA_CERTS emptied) and as this machine's
  // environment would (where that variable is set, Node parses the certificate bundle first).
  const bestOf = async (env: NodeJS.ProcessEnv): Promise<Sample> => {
    const runs: Sample[] = [];
    for (let i = 0; i < 5; i++)
      runs.push(await measure('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'node', '-e', '0']));
    return runs.reduce((x, y) => (y.ms < x.ms ? y : x));
  };
  const node = await bestOf({ NODE_EXTRA_CA_CERTS: '' });
  ctx.log('');
  ctx.log(
    `ratios = ours / qemu-img's, each side's best of ${RUNS} (goal ≤ 0.25 on the large images); Node's own baseline (node -e 0, as the launcher starts it): ${(node.rssKiB / MiB).toFixed(0)} MiB RSS, ${node.ms.toFixed(0)} ms wall, ${node.cpuMs.toFixed(0)} ms CPU.`,
  );
  if (process.env.NODE_EXTRA_CA_CERTS) {
    const withCerts = await bestOf({ NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS });
    ctx.log(
      `With this machine's NODE_EXTRA_CA_CERTS (${process.env.NODE_EXTRA_CA_CERTS}), which the launcher empties, node -e 0 takes ${withCerts.ms.toFixed(0)} ms and ${(withCerts.rssKiB / MiB).toFixed(0)} MiB.`,
    );
  }
  writeFileSync(join(ctx.dir, 'check-bench.done'), ratios.join(','));
}
