// Start-up: a whole `qcow2-doctor check` of a small image against Node's own floor (`node -e 0`,
// started the way the launcher starts, without NODE_EXTRA_CA_CERTS) and against `qemu-img check`.
// Best of 21 alternating runs; CPU time (user+sys) is the steadier figure on a shared machine.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from '../main.js';
import { bestOf, ratio, timeCommand } from '../measure.js';

export const title = 'start-up: check of a small image vs node -e 0 (whole process)';

export async function run(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const img = join(ctx.dir, 'startup-64m.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 32M 64k', img], {
    stdio: 'ignore',
  });
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: '' };
  const [node, ours, qemu] = bestOf(21, [
    { run: () => timeCommand(process.execPath, ['-e', '0'], env) },
    { run: () => timeCommand(bin, ['check', img], env) },
    { run: () => timeCommand('qemu-img', ['check', img], env) },
  ]);
  ctx.log('| what | wall (best of 21) | CPU user+sys (best) | wall / node -e 0 | CPU / node -e 0 |');
  ctx.log('|---|---|---|---|---|');
  ctx.log(`| node -e 0 | ${node!.ms.toFixed(1)} ms | ${node!.cpuMs.toFixed(0)} ms | 1.00 | 1.00 |`);
  ctx.log(
    `| qcow2-doctor check, 64 MiB image | ${ours!.ms.toFixed(1)} ms | ${ours!.cpuMs.toFixed(0)} ms | ${ratio(ours!.ms, node!.ms)} | ${ratio(ours!.cpuMs, node!.cpuMs)} |`,
  );
  ctx.log(
    `| qemu-img check, same image | ${qemu!.ms.toFixed(1)} ms | ${qemu!.cpuMs.toFixed(0)} ms | ${ratio(qemu!.ms, node!.ms)} | ${ratio(qemu!.cpuMs, node!.cpuMs)} |`,
  );
  ctx.log('');
  ctx.log(
    `goal: check wall ≤ 1.25 × node -e 0 (25 ms where node -e 0 takes 20 ms); ours / qemu-img: ${ratio(ours!.ms, qemu!.ms)} wall`,
  );
}
