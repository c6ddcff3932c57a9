// Salvage scan and export: the same engine as `qcow2-doctor salvage`, on an opened
// image or on a file that failed to open (a salvage source). The image is only read; the
// export goes to a new file next to it (never inline: a disk image is too big to send as a
// download), with the salvage report beside it; a qcow2 output is opened so it can be verified.
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ContractError } from '../../contract/errors.js';
import { confinementOf, type HandlerContext, type HandlerTable } from '../handler.js';
import { outputPath } from '../save-target.js';
import { salvageImage, type SalvageOptions } from '../../salvage/salvage.js';
import { formatSalvageReport } from '../../salvage/report-text.js';
import { CancelledError } from '../../base/errors.js';
import { openInputFile } from '../../io/input-file.js';
import { writeOutputFile } from '../../io/output-file.js';
import { Qcow2Image } from '../../image/qcow2-image.js';
import type { SalvageExportResult } from '../../contract/contract.js';
import { salvagePreview } from '../salvage-preview.js';
import { assessLeaks } from '../salvage-assess.js';
import { testDelay } from './check.js';

function options(ctx: HandlerContext, noBacking: boolean | undefined): SalvageOptions {
  const may = ctx.host.mayRead ? ctx.host.mayRead.bind(ctx.host) : undefined;
  return { progress: ctx.progress, cancel: ctx.cancel, mayReadBacking: may, ...(noBacking ? { noBacking } : {}) };
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

/** Host paths never reach a browser: name files relative to the served root. */
function shown(ctx: HandlerContext, src: { path: string; name: string }, path: string): string {
  return ctx.host.kind === 'serve' ? join(dirname(src.name), basename(path)).replace(/^\.\//, '') : path;
}

export const handlers: HandlerTable = {
  'salvage.scan': async (args, ctx) => {
    const src = ctx.sessions.fileOf(args.handle);
    if (ctx.host.testCheckDelayMs) await testDelay(ctx.host.testCheckDelayMs, ctx); // tests: a scan long enough to cancel
    const r = await run(() => salvageImage(src.path, undefined, options(ctx, args.noBacking)));
    const v = r.views.find((x) => x.kind === 'active');
    const report = { ...r, image: basename(src.name) };
    const result: Awaited<ReturnType<NonNullable<HandlerTable['salvage.scan']>>> = {
      recoverable: v ? v.bytes.recovered + v.bytes.backing : 0,
      lost: v?.bytes.lost ?? 0,
      summary: formatSalvageReport(report),
    };
    const preview = salvagePreview(report);
    if (preview) result.preview = preview;
    return result;
  },

  'salvage.export': async (args, ctx) => {
    const src = ctx.sessions.fileOf(args.handle);
    const format = args.format ?? 'qcow2';
    if (args.save.kind === 'inline')
      throw new ContractError(
        'invalid-argument',
        'a salvaged disk is too big to download: save it next to the image instead',
        { field: 'args.save.kind', value: 'inline' },
      );
    const path = await outputPath(args.save, src.path, format === 'qcow2' ? '.salvaged.qcow2' : '.salvaged.raw');
    if (path === undefined)
      throw new ContractError('invalid-argument', 'no place to save the salvaged disk', {
        field: 'args.save.kind',
        value: args.save.kind,
      });
    const root = confinementOf(ctx.host, path);
    const r = await run(() =>
      salvageImage(src.path, path, { ...options(ctx, args.noBacking), format, outputRoot: root }),
    );
    const report = { ...r, image: basename(src.name) };
    for (const v of report.views) if (v.output) v.output = shown(ctx, src, v.output);
    const reportPath = `${path}.report.txt`;
    await writeOutputFile(reportPath, formatSalvageReport(report), { root }).catch(() => undefined);
    const size = (await stat(path)).size;
    const out: SalvageExportResult = {
      name: shown(ctx, src, path),
      size,
      mime: 'application/octet-stream',
      reportName: shown(ctx, src, reportPath),
    };
    const preview = salvagePreview(report);
    if (preview) out.preview = preview;
    if (format === 'qcow2') {
      // Opened like a repaired copy: repair.verify, the maps and a report work on it.
      const io = await openInputFile(path, { root, name: path });
      try {
        const image = await Qcow2Image.open(io, { checkMode: true });
        out.handle = ctx.sessions.add({ path, name: out.name, io, image }).handle;
      } catch {
        await io.close();
      }
    }
    return out;
  },

  'salvage.assess': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    if (!s.check)
      throw new ContractError('invalid-argument', 'check the image first (check.run)', {
        field: 'args.handle',
        value: args.handle,
      });
    return assessLeaks(s);
  },
};
