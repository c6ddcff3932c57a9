// Salvage speed: a 64 GiB image with 2 GiB of data whose header cluster is zeroed, salvaged to raw,
// against `qemu-img convert -O raw` of the intact image (which does not flush its output) and
// against that convert followed by an fdatasync of its output (`sync -d`; the salvage makes its
// output durable before giving it its name). Warm: both images in the page cache; cold: the input's
// pages dropped before each run (posix_fadvise through `dd iflag=nocache`, this file only). MB/s is
// the image file's size over the wall time, beside `dd`'s sequential read of the same file.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../main.js';
import { bestOf, ratio, timeCommand } from '../measure.js';

export const title = 'salvage (header zeroed) vs qemu-img convert -O raw of the intact image';

const dropCache = (f: string): void => {
  spawnSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
};
const warm = (f: string): void => {
  spawnSync('dd', [`if=${f}`, 'of=/dev/null', 'bs=8M'], { stdio: 'ignore' });
};

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const intact = join(ctx.dir, 'salvage-64g.qcow2');
  const damaged = join(ctx.dir, 'salvage-64g-damaged.qcow2');
  const out = join(ctx.dir, 'salvage-64g.raw');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', intact, '64G']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1G', '-c', 'write -P 0x5b 32G 1G', intact], {
    stdio: 'ignore',
  });
  execFileSync('cp', ['--sparse=always', intact, damaged]);
  const fd = openSync(damaged, 'r+');
  writeSync(fd, new Uint8Array(65536), 0, 65536, 0);
  closeSync(fd);
  const size = statSync(damaged).size;
  const mbps = (ms: number): string => `${(size / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  const clean = (): void => rmSync(out, { force: true });
  const jobs = (before: () => void) => [
    { before, run: () => timeCommand('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', intact, out]) },
    {
      before,
      run: () =>
        timeCommand('/bin/sh', ['-c', 'qemu-img convert -f qcow2 -O raw "$1" "$2" && sync -d "$2"', 'sh', intact, out]),
    },
    { before, run: () => timeCommand(bin, ['salvage', damaged, out]) },
    { before, run: () => timeCommand(bin, ['salvage', '--dry-run', damaged]) },
  ];
  const cases: Array<[string, number, () => void]> = [
    [
      'warm',
      3,
      () => {
        clean();
        warm(intact);
        warm(damaged);
      },
    ],
    [
      'cold',
      2,
      () => {
        clean();
        dropCache(intact);
        dropCache(damaged);
      },
    ],
  ];
  ctx.log(`64 GiB virtual, 2 GiB written (${(size / 2 ** 20).toFixed(0)} MiB file), header cluster zeroed.`);
  ctx.log('');
  ctx.log(
    '| cache | qemu-img convert | convert + sync -d | salvage to raw (durable) | ratio vs convert | ratio vs convert + sync | salvage --dry-run | dd sequential read |',
  );
  ctx.log('|---|---|---|---|---|---|---|---|');
  for (const [label, runs, before] of cases) {
    const [qc, qs, ours, dry] = bestOf(runs, jobs(before));
    if (ours!.statuses.some((s) => s !== 0)) ctx.log(`(salvage exit statuses: ${ours!.statuses.join(', ')})`);
    before();
    const dd = timeCommand('dd', [`if=${damaged}`, 'of=/dev/null', 'bs=8M']);
    ctx.log(
      `| ${label} | ${(qc!.ms / 1000).toFixed(2)} s | ${(qs!.ms / 1000).toFixed(2)} s | ${(ours!.ms / 1000).toFixed(2)} s (${mbps(ours!.ms)}) | ${ratio(ours!.ms, qc!.ms)} | ${ratio(ours!.ms, qs!.ms)} | ${(dry!.ms / 1000).toFixed(2)} s (${mbps(dry!.ms)}) | ${(dd.ms / 1000).toFixed(2)} s (${mbps(dd.ms)}) |`,
    );
  }
  clean();
  rmSync(intact, { force: true });
  rmSync(damaged, { force: true });
  ctx.log('');
  ctx.log('goal: salvage ≤ 1.5 × qemu-img convert, cold and warm. Best of 3 (warm) and 2 (cold) alternating runs.');
}
