// The lab on real QEMU: run each workload (engine/lab/qemu-workloads.ts) through qemu-io and
// qemu-img with the image file under QEMU's blklogwrites driver, read the log, and replay it
// (engine/lab/replay.ts). Two negative controls: the same log with its flushes removed (a cache
// that ignores flushes), and QEMU run with cache.no-flush=on; both must be caught.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FileIO } from '../io/file-io.js';
import type { WriteLogEntry } from '../io/recording-io.js';
import { BackingReaders } from './backing-reader.js';
import { readDmLog } from './dm-log.js';
import { type QemuControl, imageOptsString, jsonFilename, loggedNode } from './qemu-image-opts.js';
import { type QemuStep, type QemuWorkload, qemuWorkloads } from './qemu-workloads.js';
import { type ReplayOptions, type ReplayReport, replayLog } from './replay.js';

export type { QemuControl };

export interface QemuLabOptions extends Omit<ReplayOptions, 'dumpDir' | 'onProgress'> {
  workloads?: string[];
  control?: QemuControl;
  /** Keep the work folder (images, logs) here instead of a temporary one that is removed. */
  keepDir?: string;
  onProgress?: (p: { workload: string; done: number; total: number }) => void;
}

export interface QemuWorkloadReport extends ReplayReport {
  name: string;
  what: string;
  /** dm-log-writes entries as QEMU wrote them. */
  logEntries: number;
}

const LOG_SIZE = '256M';

/** Run a QEMU tool in `cwd`; `ok` false when it exits non-zero or (qemu-io) reports a failed command. */
export function runQemuTool(cmd: string, args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 1 << 26, timeout: 120_000 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  const out = `${r.stdout}${r.stderr}`;
  // qemu-io reports a failed command on stdout and may still exit 0.
  return { ok: r.status === 0 && !(cmd === 'qemu-io' && /failed|error/i.test(out)), out };
}

function sh(cmd: string, args: string[], cwd: string): string {
  const r = runQemuTool(cmd, args, cwd);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.out.trim().split('\n')[0]}`);
  return r.out;
}

/** Run step `k` of a workload (after prepareQemuWorkload); with `blkdebugConfig`, under QEMU's fault injector. */
export function runQemuStep(
  step: QemuStep,
  k: number,
  dir: string,
  control: QemuControl = 'none',
  blkdebugConfig?: string,
): { ok: boolean; out: string } {
  const logged = { first: k === 0, control, ...(blkdebugConfig ? { blkdebugConfig } : {}) };
  let opts = imageOptsString(loggedNode({ ...logged, ...(step.opts ? { opts: step.opts } : {}) }));
  if (step.tool === 'qemu-io')
    return runQemuTool('qemu-io', ['--image-opts', ...step.args.flatMap((c) => ['-c', c]), opts], dir);
  if (step.overlay) {
    // The overlay's backing name becomes the logged image's node tree (-u: nothing else is opened).
    const backing = jsonFilename(loggedNode(logged, dir));
    const r = runQemuTool('qemu-img', ['rebase', '-u', '-b', backing, '-F', 'qcow2', 'top.qcow2'], dir);
    if (!r.ok) return r;
    opts = ['driver=qcow2', 'file.filename=top.qcow2', ...(step.opts ? [step.opts] : [])].join(',');
  }
  return runQemuTool(
    'qemu-img',
    [step.args[0]!, ...step.args.slice(1), '--image-opts', opts, ...(step.after ?? [])],
    dir,
  );
}

/** Make the workload's image in `dir` (base.qcow2: the image when logging begins) and an empty log. */
export function prepareQemuWorkload(wl: QemuWorkload, dir: string): void {
  if (wl.backing) {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', wl.backing.options, 'backing.qcow2', wl.backing.size], dir);
    if (wl.backing.io.length)
      sh('qemu-io', ['-f', 'qcow2', ...wl.backing.io.flatMap((c) => ['-c', c]), 'backing.qcow2'], dir);
  }
  const create = ['create', '-q', '-f', 'qcow2', '-o', wl.create.options];
  if (wl.backing) create.push('-b', 'backing.qcow2', '-F', 'qcow2');
  sh('qemu-img', [...create, 'disk.qcow2', wl.create.size], dir);
  if (wl.setup?.length) sh('qemu-io', ['-f', 'qcow2', ...wl.setup.flatMap((c) => ['-c', c]), 'disk.qcow2'], dir);
  if (wl.overlay) {
    const top = ['create', '-q', '-f', 'qcow2', '-o', wl.overlay.options, '-b', 'disk.qcow2', '-F', 'qcow2'];
    sh('qemu-img', [...top, 'top.qcow2', wl.create.size], dir);
    if (wl.overlay.io.length)
      sh('qemu-io', ['-f', 'qcow2', ...wl.overlay.io.flatMap((c) => ['-c', c]), 'top.qcow2'], dir);
  }
  copyFileSync(join(dir, 'disk.qcow2'), join(dir, 'base.qcow2'));
  sh('qemu-img', ['create', '-q', '-f', 'raw', 'log.bin', LOG_SIZE], dir);
}

/** Make the workload's image in `dir` (base.qcow2: the image when logging begins) and log its steps. */
export function recordQemuWorkload(wl: QemuWorkload, dir: string, control: QemuControl = 'none'): void {
  prepareQemuWorkload(wl, dir);
  wl.steps.forEach((step, k) => {
    const r = runQemuStep(step, k, dir, control);
    if (!r.ok) throw new Error(`${step.tool} ${step.args.join(' ')}: ${r.out.trim().split('\n')[0]}`);
  });
}

export function knownQemuWorkloads(): string[] {
  return qemuWorkloads().map((w) => w.name);
}

export async function runQemuLab(opts: QemuLabOptions = {}): Promise<QemuWorkloadReport[]> {
  const control = opts.control ?? 'none';
  const all = qemuWorkloads().filter((w) => !opts.workloads || opts.workloads.includes(w.name));
  const deadline = opts.budgetSeconds ? Date.now() + opts.budgetSeconds * 1000 : Infinity;
  const reports: QemuWorkloadReport[] = [];
  for (const [k, wl] of all.entries()) {
    const dir = opts.keepDir ? resolve(opts.keepDir, wl.name) : mkdtempSync(join(tmpdir(), `q2d-qemulab-${wl.name}-`));
    if (opts.keepDir) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
    }
    const backing = new BackingReaders(join(dir, 'base.qcow2'));
    try {
      recordQemuWorkload(wl, dir, control);
      const logIo = await FileIO.open(join(dir, 'log.bin'));
      const dm = await readDmLog(logIo).finally(() => logIo.close());
      let log: WriteLogEntry[] = dm.log;
      let source = dm.source;
      if (control === 'drop-flushes') {
        const keep = log.map((_, i) => i).filter((i) => log[i]!.kind !== 'flush');
        source = keep.map((i) => source[i]!);
        log = keep.map((i) => log[i]!);
      }
      // Time left, shared by the workloads still to run (unused time passes on).
      const budget = Number.isFinite(deadline) ? (deadline - Date.now()) / 1000 / (all.length - k) : undefined;
      const r = await replayLog(
        {
          base: new Uint8Array(readFileSync(join(dir, 'base.qcow2'))),
          log,
          source,
          openBacking: (n, f) => backing.reader(n, f),
        },
        {
          ...opts,
          ...(budget !== undefined ? { budgetSeconds: Math.max(0.5, budget) } : {}),
          onProgress: (p) => opts.onProgress?.({ workload: wl.name, ...p }),
        },
      );
      reports.push({ name: wl.name, what: wl.what, logEntries: dm.entries, ...r });
    } finally {
      await backing.close();
      if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
    }
  }
  return reports;
}
