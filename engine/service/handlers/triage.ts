// triage.scan: check several images (chosen ones, or every qcow2 file of a folder of the served
// root) in the background, a bounded number at once, with progress and cancel.
import type { FileList, FileRef, TriageRow } from '../../contract/contract.js';
import { ContractError } from '../../contract/errors.js';
import type { HandlerContext, HandlerTable } from '../handler.js';
import { triageFiles } from '../../triage/run-triage.js';
import type { ImageTriage } from '../../triage/types.js';
import { locksOn } from '../../repair/refusals.js';
import { testDelay } from './check.js';

const QCOW2_NAME = /\.(qcow2|qcow2c|qcow|qcow3)$/i;
const MAX_DEPTH = 16;
const MAX_IMAGES = 1000;

interface Target {
  ref: FileRef;
  path: string;
  name: string;
}

/** Every qcow2 file (by magic or name) under `dir` of the served root, through the host's listing. */
async function folderTargets(
  ctx: HandlerContext,
  dir: string,
  recursive: boolean,
  depth = 0,
  out: Target[] = [],
): Promise<Target[]> {
  if (!ctx.host.listFiles)
    throw new ContractError('not-available', 'folders can be triaged only when serving a folder', {
      field: 'args.folder',
    });
  const list: FileList = await ctx.host.listFiles(dir);
  for (const e of list.entries) {
    ctx.cancel.throwIfCancelled();
    if (out.length >= MAX_IMAGES) break;
    if (e.kind === 'dir') {
      if (recursive && depth < MAX_DEPTH) await folderTargets(ctx, e.path, recursive, depth + 1, out);
    } else if (e.qcow2 || QCOW2_NAME.test(e.name)) {
      const ref: FileRef = { kind: 'root', path: e.path };
      const r = await ctx.host.resolve(ref);
      out.push({ ref, path: r.path, name: r.name });
    }
  }
  return out;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** One line about the image for the table. */
function summaryOf(r: ImageTriage): string {
  const c = r.counters;
  switch (r.verdict) {
    case 'clean':
      return r.dirty || r.corrupt
        ? `no errors (${[r.dirty ? 'dirty' : '', r.corrupt ? 'marked corrupt' : ''].filter(Boolean).join(', ')} flag set)`
        : 'no errors';
    case 'leaks':
      return plural(c!.leaks, 'leaked cluster', 'leaked clusters');
    case 'corrupt':
      return `${plural(c!.corruptions, 'error', 'errors')}${c!.leaks ? `, ${plural(c!.leaks, 'leaked cluster', 'leaked clusters')}` : ''}`;
    default:
      return r.error ?? r.verdict;
  }
}

export const handlers: HandlerTable = {
  'triage.scan': async (args, ctx) => {
    const targets: Target[] = [];
    for (const ref of args.refs ?? []) {
      const r = await ctx.host.resolve(ref);
      targets.push({ ref, path: r.path, name: r.name });
    }
    if (args.folder) {
      if (args.folder.kind !== 'root')
        throw new ContractError('invalid-argument', 'a folder to triage must be a folder of the served root', {
          field: 'args.folder.kind',
          value: args.folder.kind,
        });
      await folderTargets(ctx, args.folder.path, args.recursive ?? true, 0, targets);
    }
    if (targets.length === 0) return [];
    let done = 0;
    ctx.progress({ fraction: 0, stage: `checking ${targets.length} images` });
    if (ctx.host.testCheckDelayMs) await testDelay(ctx.host.testCheckDelayMs, ctx); // tests: a scan long enough to cancel
    const rows = await triageFiles(
      targets.map((t) => t.path),
      {
        concurrency: 2,
        cancel: ctx.cancel,
        ...(ctx.host.mayRead ? { mayRead: ctx.host.mayRead.bind(ctx.host) } : {}),
        onRow: () => {
          done++;
          ctx.progress({ fraction: done / targets.length, stage: `checked ${done} of ${targets.length}` });
        },
      },
    );
    const out: TriageRow[] = [];
    for (const [i, r] of rows.entries()) {
      const t = targets[i]!;
      // Never send absolute paths to a browser: messages name the image by its display name.
      const rootPrefix = t.path.endsWith(t.name) ? t.path.slice(0, t.path.length - t.name.length) : '';
      const hide = (s: string): string => {
        if (ctx.host.kind !== 'serve') return s;
        const named = s.split(t.path).join(t.name);
        return rootPrefix.length > 1 ? named.split(rootPrefix).join('') : named;
      };
      const locks = await locksOn(t.path).catch(() => []);
      const row: TriageRow = {
        name: t.name,
        ref: t.ref,
        verdict: locks.length ? 'in-use' : r.verdict,
        summary: hide(
          locks.length ? `in use by another program (a running VM?); as read now: ${summaryOf(r)}` : summaryOf(r),
        ),
        fileSize: r.fileSize,
        backingChain: r.backingChain,
        elapsed: r.elapsed,
      };
      if (r.counters) row.counters = r.counters;
      if (r.dirty !== undefined) row.dirty = r.dirty;
      if (r.corrupt !== undefined) row.corrupt = r.corrupt;
      if (r.virtualSize !== undefined) row.virtualSize = r.virtualSize;
      if (r.content !== undefined) row.content = r.content;
      out.push(row);
    }
    return out;
  },
};
