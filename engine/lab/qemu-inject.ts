// Error paths of QEMU's qcow2 driver, with QEMU's own fault injector: blkdebug stacked between the
// qcow2 driver and blklogwrites fails the first request after a named event (once, EIO); QEMU goes
// on with the workload's next commands; the log holds exactly what reached the disk. The final image
// and every crash state of the log are judged as `lab --qemu` judges them (engine/lab/replay.ts):
// an error path that leaves its metadata changes in memory shows up as corruption later.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FileIO } from '../io/file-io.js';
import { MemoryIO } from '../io/memory-io.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { WriteLogEntry } from '../io/recording-io.js';
import { BackingReaders } from './backing-reader.js';
import { readDmLog } from './dm-log.js';
import { judgeMetadata } from './judge.js';
import { prepareQemuWorkload, runQemuStep } from './qemu-lab.js';
import { type QemuWorkload, qemuWorkloads } from './qemu-workloads.js';
import { type ReplayOptions, type ReplayReport, replayLog } from './replay.js';
import { type OpenBacking, readGuest } from './replay-expect.js';

/**
 * blkdebug events of QEMU 7.2's qcow2 driver (block/qcow2*.c) on the write side, plus the table
 * loads an allocation may need in its middle. QEMU 7.2 has no snapshot events: snapshot create,
 * apply and delete reach l1_update, refblock_update, cluster_alloc and friends.
 */
export const QEMU_INJECT_EVENTS = [
  'l1_update',
  'l1_grow_alloc_table',
  'l1_grow_write_table',
  'l1_grow_activate_table',
  'l1_shrink_write_table',
  'l1_shrink_free_l2_clusters',
  'l2_load',
  'l2_update',
  'l2_update_compressed',
  'l2_alloc_cow_read',
  'l2_alloc_write',
  'write_aio',
  'cow_read',
  'cow_write',
  'reftable_load',
  'reftable_grow',
  'reftable_update',
  'refblock_load',
  'refblock_update',
  'refblock_update_part',
  'refblock_alloc',
  'refblock_alloc_hookup',
  'refblock_alloc_write',
  'refblock_alloc_write_blocks',
  'refblock_alloc_write_table',
  'refblock_alloc_switch_table',
  'cluster_alloc',
  'cluster_alloc_bytes',
  'cluster_alloc_space',
  'cluster_free',
  'flush_to_os',
  'flush_to_disk',
] as const;

/** What `qemu-img check` says of an image, and our checker's verdict. */
export interface FinalVerdict {
  qemuCorruptions: number;
  qemuLeaks: number;
  /** qemu-img check could not finish (exit 1). */
  qemuFailed: boolean;
  corrupt: boolean;
  leaky: boolean;
  /** Why the guest disk does not read back whole (e.g. a compressed cluster that does not decompress). */
  unreadable?: string;
  details: string[];
}

export interface InjectReport extends ReplayReport {
  workload: string;
  event: string;
  /** Index of the step in which the injected error hit, and the tool's first error line. */
  step: number;
  error: string;
  logEntries: number;
  final: FinalVerdict;
}

export interface InjectOptions extends Omit<ReplayOptions, 'dumpDir' | 'onProgress'> {
  workloads?: string[];
  events?: string[];
  keepDir?: string;
  onProgress?: (p: { workload: string; event: string; phase: 'probe' | 'replay'; done: number; total: number }) => void;
}

/** (kind, offset, length) of each entry: a run's shape, which does not change with snapshot timestamps. */
function shape(log: readonly WriteLogEntry[]): string {
  return log
    .map((e) =>
      e.kind === 'write'
        ? `w${e.offset}+${e.data.length}`
        : e.kind === 'discard'
          ? `d${e.offset}+${e.length}`
          : e.kind === 'truncate'
            ? `t${e.size}`
            : 'f',
    )
    .join(' ');
}

/** The log of `dir`; a log whose superblock was never written (nothing logged yet) is empty. */
async function readLog(dir: string): Promise<{ log: WriteLogEntry[]; source: number[]; entries: number }> {
  const io = await FileIO.open(join(dir, 'log.bin'));
  try {
    if ((await io.read(0, 8)).every((b) => b === 0)) return { log: [], source: [], entries: 0 };
    return await readDmLog(io);
  } finally {
    await io.close();
  }
}

/** The workload without faults, twice: each step's log shape, or undefined when QEMU does not repeat itself. */
async function baselineShapes(wl: QemuWorkload, root: string): Promise<string[] | undefined> {
  if (wl.overlapping) return undefined;
  const runs: string[][] = [];
  for (let r = 0; r < 2; r++) {
    const dir = join(root, `baseline-${r}`);
    mkdirSync(dir, { recursive: true });
    prepareQemuWorkload(wl, dir);
    const shapes: string[] = [];
    for (const [k, step] of wl.steps.entries()) {
      const res = runQemuStep(step, k, dir);
      if (!res.ok) throw new Error(`${wl.name}: step ${k} fails without a fault: ${res.out.trim().split('\n')[0]}`);
      shapes.push(shape((await readLog(dir)).log));
    }
    runs.push(shapes);
    rmSync(dir, { recursive: true, force: true });
  }
  return runs[0]!.every((s, k) => s === runs[1]![k]) ? runs[0] : undefined;
}

/**
 * Run the workload with the fault armed until it hits: a step that reports a failure, or whose log
 * differs from the fault-free run's, is where it hit; the steps after it run without the fault.
 * Returns undefined when the event never fired (or fired with no request after it).
 */
async function probe(
  wl: QemuWorkload,
  event: string,
  dir: string,
  shapes: string[] | undefined,
): Promise<{ step: number; error: string } | undefined> {
  prepareQemuWorkload(wl, dir);
  const rules = join(dir, 'blkdebug.conf');
  writeFileSync(rules, `[inject-error]\nevent = "${event}"\nerrno = "5"\nonce = "on"\n`);
  let hit: { step: number; error: string } | undefined;
  for (const [k, step] of wl.steps.entries()) {
    const res = runQemuStep(step, k, dir, 'none', hit ? undefined : rules);
    if (hit) continue;
    const line = res.out.split('\n').find((l) => /failed|error/i.test(l)) ?? '';
    if (!res.ok) hit = { step: k, error: line.trim() || 'failed' };
    else if (shapes && shape((await readLog(dir)).log) !== shapes[k])
      hit = { step: k, error: 'no error reported; the log differs from the fault-free run' };
  }
  return hit;
}

/** qemu-img check (QEMU's verdict) and our checker on the final image file. */
export function qemuCheckCounts(dir: string, file: string): { corruptions: number; leaks: number; failed: boolean } {
  const r = spawnSync('qemu-img', ['check', '--output=json', file], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  try {
    const j = JSON.parse(r.stdout) as { corruptions?: number; leaks?: number };
    return { corruptions: j.corruptions ?? 0, leaks: j.leaks ?? 0, failed: r.status === 1 };
  } catch {
    return { corruptions: 0, leaks: 0, failed: true };
  }
}

/** Larger than any workload's disk: the whole guest is read. */
const FINAL_READ_LIMIT = 256 * 1024 * 1024;

/** Why the guest disk of the image in `io` does not read back whole, or undefined when it does. */
export async function guestReadError(io: PositionalIO, openBacking?: OpenBacking): Promise<string | undefined> {
  try {
    await readGuest(io, openBacking, FINAL_READ_LIMIT);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

async function judgeFinal(dir: string): Promise<FinalVerdict> {
  const q = qemuCheckCounts(dir, 'disk.qcow2');
  const bytes = new Uint8Array(readFileSync(join(dir, 'disk.qcow2')));
  const m = await judgeMetadata(new MemoryIO(bytes));
  const backing = new BackingReaders(join(dir, 'disk.qcow2'));
  const unreadable = await guestReadError(new MemoryIO(bytes), (n, f) => backing.reader(n, f)).finally(() =>
    backing.close(),
  );
  return {
    qemuCorruptions: q.corruptions,
    qemuLeaks: q.leaks,
    qemuFailed: q.failed,
    corrupt: m.corruptions > 0,
    leaky: m.leaks > 0,
    ...(unreadable ? { unreadable } : {}),
    details: [...(unreadable ? [`guest data does not read back: ${unreadable}`] : []), ...m.details].slice(0, 4),
  };
}

interface Hit {
  wl: QemuWorkload;
  event: string;
  dir: string;
  step: number;
  error: string;
}

async function discover(opts: InjectOptions, root: string): Promise<Hit[]> {
  const events = opts.events ?? [...QEMU_INJECT_EVENTS];
  const hits: Hit[] = [];
  for (const wl of qemuWorkloads().filter((w) => !opts.workloads || opts.workloads.includes(w.name))) {
    const shapes = await baselineShapes(wl, root);
    for (const [i, event] of events.entries()) {
      opts.onProgress?.({ workload: wl.name, event, phase: 'probe', done: i, total: events.length });
      const dir = join(root, wl.name, event);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const hit = await probe(wl, event, dir, shapes);
      if (hit) hits.push({ wl, event, dir, ...hit });
      else rmSync(dir, { recursive: true, force: true });
    }
  }
  return hits;
}

/** The inject matrix: every workload once per event it reaches; the final image and every crash state judged. */
export async function runQemuInject(opts: InjectOptions = {}): Promise<InjectReport[]> {
  const root = resolve(opts.keepDir ?? mkdtempSync(join(tmpdir(), 'q2d-qemu-inject-')));
  try {
    const hits = await discover(opts, root);
    // The budget covers the replays; what discovery took is not charged.
    const deadline = opts.budgetSeconds ? Date.now() + opts.budgetSeconds * 1000 : Infinity;
    const reports: InjectReport[] = [];
    for (const [k, h] of hits.entries()) {
      const budget = Number.isFinite(deadline) ? (deadline - Date.now()) / 1000 / (hits.length - k) : undefined;
      const dm = await readLog(h.dir);
      const backing = new BackingReaders(join(h.dir, 'base.qcow2'));
      try {
        const r = await replayLog(
          {
            base: new Uint8Array(readFileSync(join(h.dir, 'base.qcow2'))),
            log: dm.log,
            source: dm.source,
            openBacking: (n, f) => backing.reader(n, f),
          },
          {
            ...opts,
            ...(budget !== undefined ? { budgetSeconds: Math.max(0.5, budget) } : {}),
            onProgress: (p) => opts.onProgress?.({ workload: h.wl.name, event: h.event, phase: 'replay', ...p }),
          },
        );
        const final = await judgeFinal(h.dir);
        reports.push({
          workload: h.wl.name,
          event: h.event,
          step: h.step,
          error: h.error,
          logEntries: dm.entries,
          final,
          ...r,
        });
      } finally {
        await backing.close();
      }
    }
    return reports;
  } finally {
    if (!opts.keepDir) rmSync(root, { recursive: true, force: true });
  }
}
