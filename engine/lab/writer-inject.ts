// Our writer's error paths, the matrix `lab --qemu --inject` runs on QEMU: each lab workload once
// per named event it reaches (engine/write/events.ts: QEMU's blkdebug names), with the first request
// after the event failing once with EIO (engine/io/fault-io.ts, stacked above the recorder as
// blkdebug sits above blklogwrites: a failed request never reaches the log). The workload goes on
// after the failed operation; the final image and every crash state of the log are judged.
import { FaultIO } from '../io/fault-io.js';
import { MemoryIO } from '../io/memory-io.js';
import { RecordingIO } from '../io/recording-io.js';
import { createImage } from '../write/create.js';
import { WRITE_EVENTS } from '../write/events.js';
import { Qcow2Writer } from '../write/writer.js';
import { applyOp } from './campaign.js';
import { judgeMetadata } from './judge.js';
import { type FinalVerdict, guestReadError, type InjectOptions, type InjectReport } from './qemu-inject.js';
import { replayLog } from './replay.js';
import { type LabOp, labWorkloads, type Workload } from './workloads.js';

interface Injected {
  base: Uint8Array;
  rec: RecordingIO;
  final: MemoryIO;
  step: number;
  error: string;
}

async function baseImage(wl: Workload): Promise<Uint8Array> {
  const mem = new MemoryIO(new Uint8Array(0), `${wl.name}.qcow2`);
  await createImage(mem, wl.create);
  const w = await Qcow2Writer.open(mem, { lazyRefcounts: wl.lazyRefcounts ?? false });
  let id = 1;
  const model = { bytes: new Uint8Array(wl.create.size) };
  for (const op of wl.setup) await applyOp(w, model, new Map(), op, id++);
  await w.close();
  return mem.snapshot();
}

/**
 * Run the workload with an EIO armed at `event`; undefined when the event was never reached. Step
 * -1 is the open (a dirty image is repaired there), `ops.length` the close.
 */
async function runInjected(wl: Workload, base: Uint8Array, event: string): Promise<Injected | undefined> {
  const disk = new MemoryIO(base, `${wl.name}.qcow2`);
  const rec = new RecordingIO(disk);
  const fio = new FaultIO(rec, [{ event, errno: 'EIO', once: true }]);
  let hit: { step: number; error: string } | undefined;
  /** Run one step; an error is tolerated when the fault caused it, here or in an earlier step. */
  const step = async <T>(k: number, what: string, f: () => Promise<T>): Promise<T | undefined> => {
    const before = fio.injected;
    let out: T | undefined;
    try {
      out = await f();
    } catch (e) {
      if (fio.injected === before && !hit) throw e;
      if (!hit) hit = { step: k, error: `${what}: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (!hit && fio.injected > before) hit = { step: k, error: `${what}: the injected EIO was absorbed` };
    return out;
  };
  const w = await step(-1, 'open', () =>
    Qcow2Writer.open(fio, {
      lazyRefcounts: wl.lazyRefcounts ?? false,
      ...(wl.cacheTables ? { cacheTables: wl.cacheTables } : {}),
    }),
  );
  if (w) {
    const model = { bytes: new Uint8Array(wl.create.size) };
    const snaps = new Map<string, Uint8Array>();
    const ops: LabOp[] = [...wl.ops, { op: 'flush' }];
    let id = 1000;
    for (const [k, op] of ops.entries()) await step(k, op.op, () => applyOp(w, model, snaps, op, id++));
    await step(ops.length, 'close', () => w.close());
  }
  return hit ? { base, rec, final: disk, ...hit } : undefined;
}

async function judgeFinal(io: MemoryIO): Promise<FinalVerdict> {
  const m = await judgeMetadata(new MemoryIO(io.snapshot()));
  const unreadable = await guestReadError(new MemoryIO(io.snapshot()));
  return {
    qemuCorruptions: m.qemuCorruptions,
    qemuLeaks: m.leaks,
    qemuFailed: m.checkErrors > 0,
    corrupt: m.corruptions > 0,
    leaky: m.leaks > 0,
    ...(unreadable ? { unreadable } : {}),
    details: [...(unreadable ? [`guest data does not read back: ${unreadable}`] : []), ...m.details].slice(0, 4),
  };
}

/** Our writer through the inject matrix: every lab workload once per event it reaches. */
export async function runWriterInject(opts: InjectOptions = {}): Promise<InjectReport[]> {
  const events = opts.events ?? [...WRITE_EVENTS];
  const hits: Array<{ wl: Workload; event: string; run: Injected }> = [];
  for (const wl of labWorkloads().filter((w) => !opts.workloads || opts.workloads.includes(w.name))) {
    const base = await baseImage(wl);
    for (const [i, event] of events.entries()) {
      opts.onProgress?.({ workload: wl.name, event, phase: 'probe', done: i, total: events.length });
      const run = await runInjected(wl, base, event);
      if (run) hits.push({ wl, event, run });
    }
  }
  const deadline = opts.budgetSeconds ? Date.now() + opts.budgetSeconds * 1000 : Infinity;
  const reports: InjectReport[] = [];
  for (const [k, h] of hits.entries()) {
    const budget = Number.isFinite(deadline) ? (deadline - Date.now()) / 1000 / (hits.length - k) : undefined;
    const r = await replayLog(
      { base: h.run.base, log: h.run.rec.log },
      {
        ...opts,
        ...(budget !== undefined ? { budgetSeconds: Math.max(0.5, budget) } : {}),
        onProgress: (p) => opts.onProgress?.({ workload: h.wl.name, event: h.event, phase: 'replay', ...p }),
      },
    );
    reports.push({
      workload: h.wl.name,
      event: h.event,
      step: h.run.step,
      error: h.run.error,
      logEntries: h.run.rec.log.length,
      final: await judgeFinal(h.run.final),
      ...r,
    });
  }
  return reports;
}
