// Triage, strip and reports, side by side with what a support engineer would do with QEMU:
// `qemu-img check` on each image (one after another, and two at once), and for strip a full
// `qemu-img convert` copy as the reference for "reading the image once".
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bestOf, ratio, timeCommand } from '../measure.js';
import type { BenchContext } from '../main.js';
import { findImages } from '../../engine/triage/find-images.js';
import { triageFiles } from '../../engine/triage/run-triage.js';
import { stripFile } from '../../engine/strip/strip.js';
import { FileIO } from '../../engine/io/file-io.js';
import { checkImage, openForCheck } from '../../engine/check/index.js';
import { reportContent } from '../../engine/report/write-report.js';

export const title = 'Triage, strip and reports (against qemu-img check / convert)';

const qemu = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8', maxBuffer: 1 << 28 });

function runQemuCheck(file: string): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('qemu-img', ['check', file], { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code ?? -1));
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

export async function run(ctx: BenchContext): Promise<void> {
  const dir = join(ctx.dir, 'triage');
  execFileSync('mkdir', ['-p', dir]);
  // 20 images of 16 GiB virtual size with metadata preallocated: every L2 table and refcount
  // block exists, so each check walks real tables (about 2 MiB of L2 per image).
  const N = 20;
  for (let i = 0; i < N; i++) {
    const f = join(dir, `img-${String(i).padStart(2, '0')}.qcow2`);
    qemu('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', f, '16G');
  }
  const found = await findImages([dir]);
  const [, tOurs] = await timed(() => triageFiles(found.files, { concurrency: 2 }));
  const [, tSeq] = await timed(async () => {
    for (const f of found.files) await runQemuCheck(f);
  });
  const [, tPar] = await timed(async () => {
    const q = [...found.files];
    await Promise.all(
      [0, 1].map(async () => {
        while (q.length) await runQemuCheck(q.shift()!);
      }),
    );
  });
  ctx.log(`| task | qcow2-doctor | qemu-img | ratio |`);
  ctx.log(`|---|---|---|---|`);
  ctx.log(
    `| triage ${N} images (16 GiB, metadata preallocated), 2 at once | ${tOurs.toFixed(2)} s | ${tPar.toFixed(2)} s (check, 2 at once) | ${(tOurs / tPar).toFixed(2)} |`,
  );
  ctx.log(`| same, qemu-img one after another | | ${tSeq.toFixed(2)} s | ${(tOurs / tSeq).toFixed(2)} |`);
  await triageSmall(ctx);

  // Strip a 64 GiB image with 1 GiB of guest data written and metadata preallocated.
  const big = join(ctx.dir, 'strip-src.qcow2');
  qemu('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', big, '64G');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1G', big], { stdio: 'ignore' });
  const out = join(ctx.dir, 'strip-out.qcow2');
  const [r, tStrip] = await timed(() => stripFile(big, out));
  const conv = join(ctx.dir, 'convert-out.qcow2');
  const [, tConv] = await timed(async () => qemu('convert', '-O', 'qcow2', big, conv));
  const [, tCheck] = await timed(() => runQemuCheck(big));
  ctx.log(
    `| strip 64 GiB image (1 GiB data, ${(statSync(big).size / 2 ** 30).toFixed(2)} GiB file; kept ${(r.keptBytes / 2 ** 20).toFixed(1)} MiB) | ${tStrip.toFixed(2)} s | ${tConv.toFixed(2)} s (convert) | ${(tStrip / tConv).toFixed(2)} |`,
  );
  ctx.log(
    `| (qemu-img check of the same image, for scale) | | ${tCheck.toFixed(2)} s | ${(tStrip / tCheck).toFixed(2)} |`,
  );
  rmSync(conv, { force: true });

  // Reports for the same image (the role map costs a second pass when the check kept none).
  const io = await FileIO.open(big);
  try {
    const image = await openForCheck(io);
    const [result, tC] = await timed(() => checkImage(image, { roleMap: true }));
    const [html, tHtml] = await timed(() => reportContent('html', result, image));
    ctx.log(
      `| HTML report of the 64 GiB image (check ${tC.toFixed(2)} s not included; ${(html.length / 1024).toFixed(0)} KiB) | ${tHtml.toFixed(2)} s | | |`,
    );
  } finally {
    await io.close();
  }
}

/**
 * 300 small images (64 MiB, 1 MiB written): `qcow2-doctor triage DIR` as a user runs it, against a
 * shell loop of `qemu-img check` over the same files (best of 3, alternating). Goal: ≤ 0.25.
 */
async function triageSmall(ctx: BenchContext): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, '..', '..', '..', 'bin', 'qcow2-doctor.cjs');
  const dir = join(ctx.dir, 'triage-small');
  execFileSync('mkdir', ['-p', dir]);
  const first = join(dir, 'img-000.qcow2');
  qemu('create', '-q', '-f', 'qcow2', first, '64M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', first], { stdio: 'ignore' });
  for (let i = 1; i < 300; i++) copyFileSync(first, join(dir, `img-${String(i).padStart(3, '0')}.qcow2`));
  const [ours, loop] = bestOf(3, [
    { run: () => timeCommand(bin, ['triage', dir]) },
    { run: () => timeCommand('/bin/sh', ['-c', 'for f in "$1"/*.qcow2; do qemu-img check -q "$f"; done', 'sh', dir]) },
  ]);
  ctx.log(
    `| triage 300 images of 64 MiB (CLI, whole process) | ${(ours!.ms / 1000).toFixed(2)} s | ${(loop!.ms / 1000).toFixed(2)} s (qemu-img check loop) | ${ratio(ours!.ms, loop!.ms)} (CPU ${ratio(ours!.cpuMs, loop!.cpuMs)}) |`,
  );
  rmSync(dir, { recursive: true, force: true });
}
