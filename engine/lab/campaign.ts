// The crash-consistency campaign: run each workload on a recording backend, enumerate crash states
// of its write log, and judge every state:
//   - metadata: no corruption (leaks allowed)            → engine/lab/judge.ts
//   - data: every write acknowledged by a guest flush reads back exactly; a write in flight reads,
//     per 512-byte sector, as its old or its new contents (or another in-flight write's), never
//     other bytes
//   - life goes on: the crashed image opens, takes new writes, and still checks clean.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryIO } from '../io/memory-io.js';
import { RecordingIO, type WriteLogEntry } from '../io/recording-io.js';
import { createImage } from '../write/create.js';
import { Qcow2Writer, type WriterOptions } from '../write/writer.js';
import type { WriteOrdering } from '../write/table-cache.js';
import { createSnapshot, deleteSnapshot, revertSnapshot } from '../write/snapshots.js';
import { CrashStateBuilder, describeCrashState, enumerateCrashStates, prng, type CrashState } from './crash-states.js';
import { judgeMetadata } from './judge.js';
import { labWorkloads, patternBytes, type LabOp, type Workload } from './workloads.js';

const SECTOR = 512;

interface OpRecord {
  index: number;
  op: LabOp;
  /** Log length before and after the operation. */
  start: number;
  end: number;
  /** Guest sectors the operation changed, with their new contents. */
  changes: Map<number, Uint8Array>;
  /** Guest flushes: log index of the flush that acknowledged everything before. */
  flushIndex?: number;
  /** Guest flushes: guest contents at that point. */
  modelAfter?: Uint8Array;
}

export interface Recording {
  workload: Workload;
  base: Uint8Array;
  baseModel: Uint8Array;
  log: WriteLogEntry[];
  ops: OpRecord[];
  /** Flushes the workload asked for (guest flushes, including the final one). */
  guestFlushes: number;
  /** Flushes the write path issued on its own to order metadata (all flushes in the log minus the guest's). */
  orderingFlushes: number;
  allocatingWrites: number;
}

/** Apply one lab operation to the writer and to the guest model (and the snapshots' models). */
export async function applyOp(
  w: Qcow2Writer,
  model: { bytes: Uint8Array },
  snaps: Map<string, Uint8Array>,
  op: LabOp,
  opId: number,
): Promise<void> {
  switch (op.op) {
    case 'write': {
      const d = patternBytes(opId, op.offset, op.length);
      await w.write(op.offset, d);
      model.bytes.set(d, op.offset);
      return;
    }
    case 'zero':
      await w.writeZeroes(op.offset, op.length);
      model.bytes.fill(0, op.offset, op.offset + op.length);
      return;
    case 'discard': {
      await w.discard(op.offset, op.length);
      const cs = w.clusterSize;
      const a = Math.ceil(op.offset / cs) * cs;
      const b = Math.floor((op.offset + op.length) / cs) * cs;
      if (b > a) model.bytes.fill(0, a, b);
      return;
    }
    case 'compressed': {
      const len = Math.min(w.clusterSize, w.virtualSize - op.offset);
      const d = patternBytes(opId, op.offset, len);
      await w.writeCompressed(op.offset, d);
      model.bytes.set(d, op.offset);
      return;
    }
    case 'flush':
      await w.flush();
      return;
    case 'resize': {
      await w.resize(op.size);
      const next = new Uint8Array(op.size);
      next.set(model.bytes);
      model.bytes = next;
      return;
    }
    case 'snapshot-create':
      await createSnapshot(w, op.name);
      snaps.set(op.name, model.bytes.slice());
      return;
    case 'snapshot-delete':
      await deleteSnapshot(w, op.name);
      snaps.delete(op.name);
      return;
    case 'snapshot-revert': {
      await revertSnapshot(w, op.name);
      const s = snaps.get(op.name);
      if (!s) throw new Error(`lab: no snapshot ${op.name} in the model`);
      model.bytes = s.slice();
      return;
    }
  }
}

function diffSectors(before: Uint8Array, after: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const n = Math.ceil(after.length / SECTOR);
  for (let s = 0; s < n; s++) {
    const a = after.subarray(s * SECTOR, (s + 1) * SECTOR);
    const b = before.subarray(s * SECTOR, (s + 1) * SECTOR);
    if (
      b.length !== a.length ||
      !Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))
    )
      out.set(s, a.slice());
  }
  return out;
}

/** Build the base image (not recorded), then run the workload's operations on a recording backend. */
export async function recordWorkload(wl: Workload, ordering: WriteOrdering): Promise<Recording> {
  const mem = new MemoryIO(new Uint8Array(0), `${wl.name}.qcow2`);
  await createImage(mem, wl.create);
  const model = { bytes: new Uint8Array(wl.create.size) };
  const snaps = new Map<string, Uint8Array>();
  const setupWriter = await Qcow2Writer.open(mem, { lazyRefcounts: wl.lazyRefcounts ?? false });
  let opId = 1;
  for (const op of wl.setup) await applyOp(setupWriter, model, snaps, op, opId++);
  await setupWriter.close();
  const base = mem.snapshot();
  const baseModel = model.bytes.slice();

  const rec = new RecordingIO(new MemoryIO(base, `${wl.name}.qcow2`));
  const w = await Qcow2Writer.open(rec, {
    ordering,
    lazyRefcounts: wl.lazyRefcounts ?? false,
    ...(wl.cacheTables ? { cacheTables: wl.cacheTables } : {}),
  });
  const ops: OpRecord[] = [];
  const all = [...wl.ops, { op: 'flush' } as LabOp];
  for (let i = 0; i < all.length; i++) {
    const op = all[i]!;
    const before = model.bytes.slice();
    const start = rec.log.length;
    await applyOp(w, model, snaps, op, opId++);
    const r: OpRecord = { index: i, op, start, end: rec.log.length, changes: diffSectors(before, model.bytes) };
    if (op.op === 'flush') {
      r.flushIndex = rec.log.length - 1;
      r.modelAfter = model.bytes.slice();
    }
    ops.push(r);
  }
  const guestFlushes = all.filter((op) => op.op === 'flush').length;
  return {
    workload: wl,
    base,
    baseModel,
    log: rec.log,
    ops,
    guestFlushes,
    orderingFlushes: rec.flushCount - guestFlushes,
    allocatingWrites: w.stats.allocatingWrites,
  };
}

export interface StateVerdict {
  corrupt: boolean;
  badSectors: number;
  copiedBenign: boolean;
  leaky: boolean;
  wasDirty: boolean;
  continueFailed: boolean;
  details: string[];
}

/** Data expectations of a crash state: what is durable, and which operations were in flight. */
function expectations(rec: Recording, state: CrashState): { durable: Uint8Array; inflight: OpRecord[] } {
  let g: OpRecord | undefined;
  for (const op of rec.ops)
    if (op.flushIndex !== undefined && op.flushIndex <= state.lastFlush && op.start < state.crashAt) g = op;
  const durable = g?.modelAfter ?? rec.baseModel;
  const after = g?.index ?? -1;
  return { durable, inflight: rec.ops.filter((o) => o.index > after && o.start < state.crashAt) };
}

async function checkData(io: MemoryIO, rec: Recording, state: CrashState, details: string[]): Promise<number> {
  const { durable, inflight } = expectations(rec, state);
  let reader: Qcow2Writer;
  try {
    reader = await Qcow2Writer.open(io, { readOnly: true });
  } catch (e) {
    details.push(`data: cannot open for reading: ${e instanceof Error ? e.message : String(e)}`);
    return Math.ceil(durable.length / SECTOR);
  }
  let bad = 0;
  if (reader.virtualSize < durable.length) {
    details.push(`data: virtual size ${reader.virtualSize} < acknowledged ${durable.length}`);
    bad++;
  }
  let guest: Uint8Array;
  try {
    guest = await reader.read(0, Math.min(durable.length, reader.virtualSize));
  } catch (e) {
    details.push(`data: read failed: ${e instanceof Error ? e.message : String(e)}`);
    return Math.ceil(durable.length / SECTOR);
  }
  const n = guest.length / SECTOR;
  const G = Buffer.from(guest.buffer, guest.byteOffset, guest.length);
  const D = Buffer.from(durable.buffer, durable.byteOffset, durable.length);
  for (let s = 0; s < n; s++) {
    const a = s * SECTOR;
    if (G.compare(D, a, a + SECTOR, a, a + SECTOR) === 0) continue;
    let ok = false;
    for (const op of inflight) {
      const c = op.changes.get(s);
      if (c && G.compare(c, 0, SECTOR, a, a + SECTOR) === 0) {
        ok = true;
        break;
      }
    }
    if (!ok) {
      bad++;
      if (details.length < 8)
        details.push(
          `data: guest sector ${s} (0x${a.toString(16)}) holds neither its acknowledged nor an in-flight value`,
        );
    }
  }
  return bad;
}

/** Open the crashed image, write to it, flush, close: it must still read back and check clean. */
export async function continueAfterCrash(
  io: MemoryIO,
  details: string[],
  writerOptions: WriterOptions = {},
): Promise<boolean> {
  try {
    const w = await Qcow2Writer.open(io, writerOptions);
    const cs = w.clusterSize;
    const size = w.virtualSize;
    const a = patternBytes(0xfff0, 512, 1536);
    const lastOff = Math.max(0, (Math.floor(size / cs) - 1) * cs);
    const b = patternBytes(0xfff1, lastOff, Math.min(cs, size - lastOff));
    await w.write(512, a);
    await w.write(lastOff, b);
    await w.flush();
    await w.close();
    const r = await Qcow2Writer.open(io, { ...writerOptions, readOnly: true });
    const ra = await r.read(512, a.length);
    const rb = await r.read(lastOff, b.length);
    if (!Buffer.from(ra).equals(Buffer.from(a)) || !Buffer.from(rb).equals(Buffer.from(b))) {
      details.push('continue: new writes did not read back');
      return false;
    }
    const v = await judgeMetadata(io);
    if (v.corruptions > 0) {
      details.push(`continue: corruption after new writes: ${v.details[0] ?? ''}`);
      return false;
    }
    return true;
  } catch (e) {
    details.push(`continue: ${e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

export async function judgeState(
  rec: Recording,
  state: CrashState,
  io: MemoryIO,
  continueWriting: boolean,
): Promise<StateVerdict> {
  const details: string[] = [];
  const badSectors = await checkData(io, rec, state, details);
  const m = await judgeMetadata(io);
  details.push(...m.details);
  const v: StateVerdict = {
    corrupt: m.corruptions > 0,
    badSectors,
    copiedBenign: m.copiedBenign > 0,
    leaky: m.leaks > 0,
    wasDirty: m.wasDirty,
    continueFailed: false,
    details,
  };
  if (continueWriting && !v.corrupt) v.continueFailed = !(await continueAfterCrash(io, details));
  return v;
}

export interface CampaignOptions {
  ordering?: WriteOrdering;
  seed?: number;
  subsetsPerEpoch?: number;
  tornPerEpoch?: number;
  /** Seconds for the whole campaign (split evenly between workloads); unbounded when absent. */
  budgetSeconds?: number;
  /** Try to continue writing on every Nth state (0: never). Default 5. */
  continueEvery?: number;
  /** Write a sample of crash-state images here (qcow2 files, for qemu-img check). */
  dumpDir?: string;
  /** Dump every Nth state (and every failing one). Default 25. */
  dumpEvery?: number;
  /** Only these workloads (by name). */
  workloads?: string[];
  /** Visit only every Nth crash state (a cheaper sample, e.g. to dump for qemu-img). Default 1. */
  stride?: number;
  onProgress?: (p: { workload: string; done: number; total: number }) => void;
}

export interface WorkloadReport {
  name: string;
  logLength: number;
  states: number;
  /** States whose metadata shows a corruption. */
  corruptions: number;
  /** States where a guest sector holds bytes it may not hold. */
  dataMismatches: number;
  /** States with harmless COPIED disagreements only (qemu-img counts them). */
  copiedBenign: number;
  /** States with leaked clusters (allowed). */
  leaky: number;
  dirtyRepaired: number;
  continueTried: number;
  continueFailures: number;
  guestFlushes: number;
  orderingFlushes: number;
  allocatingWrites: number;
  /** Ordering flushes per 1000 allocating writes: the cost of crash consistency, guest flushes apart. */
  orderingFlushesPer1000AllocatingWrites: number;
  dumped: string[];
  /** A few failing states with their reasons. */
  failures: string[];
}

export async function runCampaign(opts: CampaignOptions = {}): Promise<WorkloadReport[]> {
  const ordering = opts.ordering ?? 'ordered';
  const seed = opts.seed ?? 1;
  const all = labWorkloads().filter((w) => !opts.workloads || opts.workloads.includes(w.name));
  const deadline = opts.budgetSeconds ? Date.now() + opts.budgetSeconds * 1000 : Infinity;
  const continueEvery = opts.continueEvery ?? 5;
  const dumpEvery = opts.dumpEvery ?? 25;
  if (opts.dumpDir) mkdirSync(opts.dumpDir, { recursive: true });
  const reports: WorkloadReport[] = [];
  for (const [k, wl] of all.entries()) {
    const t0 = Date.now();
    // Time left, shared by the workloads still to run (unused time passes on).
    const perWorkloadMs = (deadline - t0) / (all.length - k);
    const rec = await recordWorkload(wl, ordering);
    let states = enumerateCrashStates(rec.log, {
      seed,
      subsetsPerEpoch: opts.subsetsPerEpoch ?? 8,
      tornPerEpoch: opts.tornPerEpoch ?? 4,
    });
    const stride = Math.max(1, Math.floor(opts.stride ?? 1));
    if (stride > 1) states = states.filter((_, i) => i % stride === 0);
    if (Number.isFinite(perWorkloadMs)) {
      // Under a time budget, visit states in a seeded random order so a cut keeps a fair sample.
      const rnd = prng(seed ^ 0x5eed);
      const keyed = states.map((s) => ({ s, k: rnd() }));
      keyed.sort((a, b) => a.k - b.k);
      states = keyed.map((x) => x.s);
    }
    const builder = new CrashStateBuilder(rec.base, rec.log);
    const r: WorkloadReport = {
      name: wl.name,
      logLength: rec.log.length,
      states: 0,
      corruptions: 0,
      dataMismatches: 0,
      copiedBenign: 0,
      leaky: 0,
      dirtyRepaired: 0,
      continueTried: 0,
      continueFailures: 0,
      guestFlushes: rec.guestFlushes,
      orderingFlushes: rec.orderingFlushes,
      allocatingWrites: rec.allocatingWrites,
      orderingFlushesPer1000AllocatingWrites: rec.allocatingWrites
        ? Math.round((rec.orderingFlushes / rec.allocatingWrites) * 1000)
        : 0,
      dumped: [],
      failures: [],
    };
    for (let i = 0; i < states.length; i++) {
      if (Date.now() - t0 > perWorkloadMs) break;
      const state = states[i]!;
      const io = await builder.build(state);
      const raw = opts.dumpDir ? io.snapshot() : undefined;
      const tryContinue = continueEvery > 0 && i % continueEvery === 0;
      const v = await judgeState(rec, state, io, tryContinue);
      r.states++;
      if (v.corrupt) r.corruptions++;
      if (v.badSectors > 0) r.dataMismatches++;
      if (v.copiedBenign) r.copiedBenign++;
      if (v.leaky) r.leaky++;
      if (v.wasDirty) r.dirtyRepaired++;
      if (tryContinue && !v.corrupt) r.continueTried++;
      if (v.continueFailed) r.continueFailures++;
      const failed = v.corrupt || v.badSectors > 0 || v.continueFailed;
      if (failed && r.failures.length < 5)
        r.failures.push(`${describeCrashState(state)}: ${v.details.slice(0, 3).join('; ')}`);
      if (opts.dumpDir && raw && (i % dumpEvery === 0 || (failed && r.dumped.length < 200))) {
        const file = join(
          opts.dumpDir,
          `${wl.name}-${String(i).padStart(5, '0')}-${state.kind}${failed ? '-FAILED' : ''}.qcow2`,
        );
        writeFileSync(file, raw);
        r.dumped.push(file);
      }
      opts.onProgress?.({ workload: wl.name, done: i + 1, total: states.length });
    }
    reports.push(r);
  }
  return reports;
}
