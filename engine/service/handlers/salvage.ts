// Salvage scan and export (issue 8): the same engine as `qcow2-doctor salvage`, on an opened
// image. The image is only read; the export goes to a new file next to it (never inline: a disk
// image is too big to send as a download).
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ContractError } from '../errors.js';
import type { HandlerContext, HandlerTable } from '../handler.js';
import { outputPath } from '../save-target.js';
import { salvageImage, type SalvageOptions } from '../../salvage/salvage.js';
import { formatSalvageReport } from '../../salvage/report-text.js';
import { CancelledError } from '../../errors.js';

function options(ctx: HandlerContext): SalvageOptions {
  const may = ctx.host.mayRead ? ctx.host.mayRead.bind(ctx.host) : undefined;
  return { progress: ctx.progress, cancel: ctx.cancel, mayReadBacking: may };
}

async function run<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ContractError) throw e;
    if (e instanceof CancelledError) throw new ContractError('cancelled', 'salvage cancelled');
    throw new ContractError('io', e instanceof Error ? e.message : String(e));
  }
}

export const handlers: HandlerTable = {
  'salvage.scan': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const r = await run(() => salvageImage(s.path, undefined, options(ctx)));
    const v = r.views.find((x) => x.kind === 'active');
    const report = { ...r, image: basename(s.name) };
    return { recoverable: v ? v.bytes.recovered + v.bytes.backing : 0, lost: v?.bytes.lost ?? 0, summary: formatSalvageReport(report) };
  },

  'salvage.export': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const format = args.format ?? 'qcow2';
    if (args.save.kind === 'inline')
      throw new ContractError('invalid-argument', 'a salvaged disk is too big to download: save it next to the image instead', { field: 'args.save.kind', value: 'inline' });
    const path = await outputPath(args.save, s.path, format === 'qcow2' ? '.salvaged.qcow2' : '.salvaged.raw');
    if (path === undefined) throw new ContractError('invalid-argument', 'no place to save the salvaged disk', { field: 'args.save.kind', value: args.save.kind });
    await run(() => salvageImage(s.path, path, { ...options(ctx), format }));
    const size = (await stat(path)).size;
    const name = ctx.host.kind === 'serve' ? join(dirname(s.name), basename(path)).replace(/^\.\//, '') : path;
    return { name, size, mime: 'application/octet-stream' };
  },
};
