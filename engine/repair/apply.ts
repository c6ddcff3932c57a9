/**
 * Apply a repair plan: phase by phase, each write checked against the bytes the plan expects to
 * replace, and a flush barrier after every phase (the plan's phase order is what keeps every
 * intermediate state at worst leaky). The undo journal must already be durable.
 */
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';
import type { RepairPlan } from './plan.js';

export interface ApplyOptions {
  onProgress?: ProgressSink;
  /** Honoured only before the first write: once writing started, the repair runs to the end. */
  cancel?: CancelToken;
  /** Called after each flush barrier (the crash lab and tests use it to look at intermediate states). */
  onBarrier?: (phase: string) => Promise<void> | void;
  /** Called before a phase runs; returning false skips it (used to clear the corrupt bit only after a clean re-check). */
  beforePhase?: (phase: string) => Promise<boolean> | boolean;
}

export class StaleImageError extends Error {
  constructor(offset: number, structure: string) {
    super(
      `image changed since the plan was made: ${structure} at 0x${offset.toString(16)} no longer holds the expected bytes; nothing further written`,
    );
    this.name = 'StaleImageError';
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export async function applyPlan(
  io: PositionalIO,
  plan: RepairPlan,
  opts: ApplyOptions = {},
): Promise<{ writes: number; bytes: number; skipped: string[] }> {
  const skipped: string[] = [];
  opts.cancel?.throwIfCancelled();
  const total = plan.steps.reduce((n, s) => n + s.writes.length, 0) || 1;
  let done = 0;
  let bytes = 0;
  for (const step of plan.steps) {
    if (step.writes.length === 0 && step.growTo === undefined) continue;
    if (opts.beforePhase && !(await opts.beforePhase(step.phase))) {
      skipped.push(step.phase);
      continue;
    }
    if (step.growTo !== undefined && (await io.size()) < step.growTo) await io.truncate(step.growTo);
    for (const w of step.writes) {
      const cur = await readPadded(io, w.offset, w.oldBytes.length);
      if (!same(cur, w.oldBytes)) {
        if (same(cur, w.newBytes)) {
          done++;
          continue;
        } // already there (a re-run after an interruption)
        throw new StaleImageError(w.offset, w.structure);
      }
      await io.write(w.offset, w.newBytes);
      bytes += w.newBytes.length;
      done++;
      opts.onProgress?.({ fraction: done / total, stage: `repair: ${step.phase}` });
    }
    await io.flush();
    await opts.onBarrier?.(step.phase);
  }
  return { writes: done, bytes, skipped };
}
