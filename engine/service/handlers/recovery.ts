// The recovery wizard's requests: lock status and space (safety), repair plan (preview), apply (to a
// copy, or in place with an undo journal), verify (fresh check, QEMU's verdict when qemu-img is
// installed, guest data compared with before), undo. The repair itself is engine/repair's.
import { formatBytes } from '../../contract/units.js';
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { RepairPlanResult, VerifyResult } from '../../contract/contract.js';
import { ContractError } from '../../contract/errors.js';
import { confinementOf, type HandlerContext, type HandlerTable } from '../handler.js';
import { randomHandle, type Session } from '../session.js';
import { openInputFile } from '../../io/input-file.js';
import { Qcow2Image } from '../../image/qcow2-image.js';
import { planRepairFile, repairFile, undoRepair, verifyFile, RepairRefusedError } from '../../repair/index.js';
import type { Phase, RepairPlan } from '../../repair/plan.js';
import type { CheckResult } from '../../check/types.js';
import { holderInfo, spaceFor } from '../lock-holder.js';
import { outputPath } from '../save-target.js';
import { compareGuest } from '../guest-compare.js';
import { CancelledError } from '../../base/errors.js';

/** Steps sent for a plan; a plan of millions of writes is summarised after this many. */
const MAX_STEPS = 20000;

interface StoredPlan {
  plan: RepairPlan;
  mode: 'leaks' | 'all';
  mtimeMs: number;
  size: number;
}

/** What the last repair of a session left: enough to verify it against before and to undo it. */
export interface RepairRecord {
  /** The image before the repair: the original file (copy repairs) or this file + journal. */
  before: { path: string; journalPath?: string };
  journalPath?: string;
  plan: RepairPlan;
  /** The check of the image before the repair (for the report's "before"). */
  beforeCheck?: CheckResult;
}

/** Repairs by session; kept outside the session's cache, which every check clears. */
const records = new WeakMap<Session, RepairRecord>();

export function repairRecordOf(s: Session): RepairRecord | undefined {
  return records.get(s);
}

const RISK: Record<Phase, 'none' | 'low' | 'high'> = {
  'mark-corrupt': 'none',
  'clear-copied': 'none',
  grow: 'low',
  raise: 'low',
  'switch-reftable': 'high',
  data: 'high',
  relink: 'high',
  lower: 'low',
  'set-copied': 'none',
  header: 'none',
};

const PHASE_WORDS: Record<Phase, string> = {
  'mark-corrupt': 'mark the image as being repaired',
  'clear-copied': 'clear "writable in place" flags',
  grow: 'grow the file',
  raise: 'raise use counts / write new refcount structures',
  'switch-reftable': 'switch to the rebuilt refcount table',
  data: 'copy shared clusters',
  relink: 'fix pointers',
  lower: 'lower use counts (free leaked space)',
  'set-copied': 'set "writable in place" flags',
  header: 'clear the dirty and corrupt flags',
};

/** Replace absolute paths by the session's display name (a browser never sees host paths). */
function hidePaths(ctx: HandlerContext, s: Session, text: string): string {
  if (ctx.host.kind !== 'serve') return text;
  const named = text.split(s.path).join(s.name);
  const prefix = s.path.endsWith(s.name) ? s.path.slice(0, s.path.length - s.name.length) : '';
  return prefix.length > 1 ? named.split(prefix).join('') : named;
}

/** A display name for a file written next to the session's image. */
function siblingName(ctx: HandlerContext, s: Session, path: string): string {
  return ctx.host.kind === 'serve' ? join(dirname(s.name), basename(path)).replace(/^\.\//, '') : path;
}

function refused(ctx: HandlerContext, s: Session, e: unknown): never {
  if (e instanceof RepairRefusedError) {
    const msg = hidePaths(ctx, s, e.message);
    throw new ContractError(/in use/.test(msg) ? 'busy' : 'io', msg);
  }
  throw e;
}

async function reopen(s: Session, ctx: HandlerContext): Promise<void> {
  await s.io.close().catch(() => undefined);
  s.io = await openInputFile(s.path, { root: confinementOf(ctx.host, s.path), name: s.path });
  s.image = await Qcow2Image.open(s.io, { checkMode: true });
  delete s.check;
  delete s.references;
  delete s.hostLegend;
  delete s.guestLegend;
  s.cache.clear();
}

function planResult(planId: string, p: RepairPlan): RepairPlanResult {
  const steps: RepairPlanResult['steps'] = [];
  let n = 0;
  let more = 0;
  for (const step of p.steps) {
    if (step.growTo !== undefined)
      steps.push({
        title: `${PHASE_WORDS[step.phase]}: to ${step.growTo} bytes`,
        detail: `file length ${p.originalLength} → ${step.growTo}`,
        risk: RISK[step.phase],
      });
    for (const w of step.writes) {
      if (++n > MAX_STEPS) {
        more++;
        continue;
      }
      steps.push({
        title: `${PHASE_WORDS[step.phase]}: ${w.structure} at 0x${w.offset.toString(16)} (${w.newBytes.length} bytes)`,
        detail: `${w.why}${w.newBytes.length <= 16 ? ` — ${hexOf(w.oldBytes)} → ${hexOf(w.newBytes)}` : ''}`,
        risk: RISK[step.phase],
      });
    }
  }
  if (more)
    steps.push({
      title: `… and ${more} more writes of the same kinds`,
      detail: 'the complete list is in the JSON report and in `qcow2-doctor check -r … --dry-run`',
      risk: 'low',
    });
  const leaves = p.refusals.map((r) => `${r.what} — ${r.decide}`);
  if (p.failed !== undefined) leaves.unshift(`the repair cannot run in this mode: ${p.failed}`);
  const lost = p.guestRangesLost ?? [];
  const loses = {
    ranges: lost.slice(0, MAX_LOST_RANGES).map((r) => ({ start: r.start, length: r.length })),
    rangesMore: Math.max(0, lost.length - MAX_LOST_RANGES),
    unplacedBytes: p.dataLostUnplaced?.bytes ?? 0,
  };
  return { planId, steps, fixes: p.leaksFixed + p.corruptionsFixed, leaves, loses };
}

/** Lost guest ranges listed in the plan (the JSON report and the CLI list them all). */
const MAX_LOST_RANGES = 50;

const hexOf = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** `qemu-img check` of the file, when qemu-img is installed (its verdict is the judge's). */
function qemuCheck(path: string): Promise<{ status: number; summary: string } | undefined> {
  return new Promise((resolve) => {
    let out = '';
    let p;
    try {
      // Never a name read from the image: backing disabled, so qemu-img opens no other file or host.
      const spec = `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: path } })}`;
      p = spawn('qemu-img', ['check', '-f', 'qcow2', spec], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch {
      resolve(undefined);
      return;
    }
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', () => resolve(undefined));
    p.on('close', (code) => resolve({ status: code ?? -1, summary: out }));
  });
}

export const handlers: HandlerTable = {
  'lock.status': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const h = await holderInfo(s.path);
    const space = await spaceFor(s.path);
    const r: Awaited<ReturnType<NonNullable<HandlerTable['lock.status']>>> = {
      locked: h.locked,
      detail: hidePaths(ctx, s, h.detail),
      spaceNeeded: space.needed,
    };
    if (h.holder !== undefined) r.holder = h.holder;
    if (space.free !== undefined) r.spaceFree = space.free;
    return r;
  },

  'repair.plan': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const mode = args.mode ?? 'all';
    ctx.progress({ fraction: 0.1, stage: 'planning the repair' });
    const st = await stat(s.path);
    const plan = await planRepairFile(s.path, mode);
    const planId = `plan-${randomHandle().slice(0, 16)}`;
    s.cache.set(`plan:${planId}`, { plan, mode, mtimeMs: st.mtimeMs, size: st.size } satisfies StoredPlan);
    ctx.progress({ fraction: 1, stage: 'done' });
    const r = planResult(planId, plan);
    r.leaves = r.leaves.map((l) => hidePaths(ctx, s, l));
    return r;
  },

  'repair.apply': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const stored = s.cache.get(`plan:${args.planId}`) as StoredPlan | undefined;
    if (!stored)
      throw new ContractError('not-found', `no plan ${args.planId} for this image: make a plan first`, {
        field: 'args.planId',
        value: args.planId,
      });
    const st = await stat(s.path);
    if (st.mtimeMs !== stored.mtimeMs || st.size !== stored.size)
      throw new ContractError(
        'busy',
        'the image changed since the plan was made: make a new plan and look at it again',
      );
    if (stored.plan.failed !== undefined)
      throw new ContractError(
        'invalid-argument',
        hidePaths(ctx, s, `this plan cannot be applied: ${stored.plan.failed}`),
      );
    // Apply exactly the plan the user reviewed; the repair stops (StaleImageError) if the image moved on.
    const common = {
      image: s.path,
      outputRoot: confinementOf(ctx.host, s.path),
      mode: stored.mode,
      plan: stored.plan,
      onProgress: ctx.progress,
      cancel: ctx.cancel,
    };
    if (args.target.kind === 'copy') {
      const out = await outputPath(args.target.save, s.path, '.repaired.qcow2');
      if (out === undefined)
        throw new ContractError('invalid-argument', 'a repaired copy is saved next to the image, not downloaded', {
          field: 'args.target.save.kind',
          value: 'inline',
        });
      const outcome = await repairFile({ ...common, outputImage: out }).catch((e) => refused(ctx, s, e));
      const io = await openInputFile(out, { root: confinementOf(ctx.host, out), name: out });
      let image: Qcow2Image;
      try {
        image = await Qcow2Image.open(io, { checkMode: true });
      } catch (e) {
        await io.close();
        throw e;
      }
      const copy = ctx.sessions.add({ path: out, name: siblingName(ctx, s, out), io, image });
      records.set(copy, { before: { path: s.path }, plan: outcome.plan, ...(s.check ? { beforeCheck: s.check } : {}) });
      return { handle: copy.handle, name: copy.name, counters: (outcome.after ?? outcome.before).counters };
    }
    const journal = args.target.journal ?? true;
    const outcome = await repairFile({ ...common, ...(journal ? {} : { journal: false as const }) }).catch((e) =>
      refused(ctx, s, e),
    );
    const beforeCheck = s.check;
    await reopen(s, ctx);
    const record: RepairRecord = {
      before: { path: s.path },
      plan: outcome.plan,
      ...(beforeCheck ? { beforeCheck } : {}),
    };
    if (outcome.journalPath !== undefined) {
      record.journalPath = outcome.journalPath;
      record.before.journalPath = outcome.journalPath;
    }
    records.set(s, record);
    const r: Awaited<ReturnType<NonNullable<HandlerTable['repair.apply']>>> = {
      handle: s.handle,
      name: s.name,
      counters: (outcome.after ?? outcome.before).counters,
    };
    if (outcome.journalPath !== undefined) r.journal = siblingName(ctx, s, outcome.journalPath);
    return r;
  },

  'repair.verify': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    ctx.progress({ fraction: 0, stage: 'checking the repaired image' });
    const a = await verifyFile(s.path);
    ctx.cancel.throwIfCancelled();
    const c = a.counters;
    const r: VerifyResult = {
      ok: a.failed === undefined && c.corruptions === 0 && c.leaks === 0 && c.checkErrors === 0,
      counters: c,
    };
    const q = await qemuCheck(s.path);
    if (q) r.qemu = { status: q.status, summary: hidePaths(ctx, s, q.summary) };
    const rec = records.get(s);
    if (rec && (rec.before.path !== s.path || rec.before.journalPath !== undefined)) {
      try {
        const g = await compareGuest(rec.before, s.path, {
          cancel: ctx.cancel,
          progress: (p) => ctx.progress({ fraction: 0.3 + 0.7 * p.fraction, stage: p.stage }),
        });
        r.guestData = { comparedBytes: g.comparedBytes, differingBytes: g.differingBytes, detail: g.detail };
      } catch (e) {
        if (e instanceof CancelledError) throw e;
        r.guestData = {
          comparedBytes: 0,
          differingBytes: 0,
          detail: hidePaths(ctx, s, `guest data not compared: ${(e as Error).message}`),
        };
      }
    }
    ctx.progress({ fraction: 1, stage: 'done' });
    return r;
  },

  'repair.undo': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const rec = records.get(s);
    if (!rec?.journalPath)
      return { ok: false, detail: 'there is no undo journal for a repair of this image in this session' };
    const r = await undoRepair(rec.journalPath, { image: s.path }).catch((e) => refused(ctx, s, e));
    await reopen(s, ctx);
    records.delete(s);
    return {
      ok: true,
      detail: `restored ${r.regionsRestored} ${r.regionsRestored === 1 ? 'region' : 'regions'} (${formatBytes(r.bytesRestored)}) and the original length of ${formatBytes(r.originalLength)}: the image is exactly as it was before the repair`,
    };
  },
};
