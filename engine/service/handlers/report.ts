// report.export (HTML/JSON report of the last check, with the repair when there was one) and
// image.strip (the metadata-only copy for support).
import { basename, dirname, join } from 'node:path';
import type { SavedOutput } from '../../contract/contract.js';
import { ContractError } from '../../contract/errors.js';
import { confinementOf, type HandlerContext, type HandlerTable } from '../handler.js';
import type { Session } from '../session.js';
import { checkedSession } from './check.js';
import { reportContent } from '../../report/write-report.js';
import { repairExtras, type ReportExtras } from '../../report/report-data.js';
import { stripFile, stripIO } from '../../strip/strip.js';
import { MemoryIO } from '../../io/memory-io.js';
import { writeOutputFile } from '../../io/output-file.js';
import { outputPath } from '../save-target.js';
import { repairRecordOf } from './recovery.js';
import { verifyFile } from '../../repair/index.js';

/** A stripped copy is sent inline only up to this file length (it is mostly zeros, but still bytes). */
const MAX_INLINE_STRIP = 256 * 1024 * 1024;

function displayName(ctx: HandlerContext, s: Session, path: string): string {
  return ctx.host.kind === 'serve' ? join(dirname(s.name), basename(path)).replace(/^\.\//, '') : path;
}

export const handlers: HandlerTable = {
  'report.export': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const rec = repairRecordOf(s);
    if (!rec?.beforeCheck) checkedSession(ctx, args.handle);
    const extras: ReportExtras = {};
    if (rec) {
      const after = await verifyFile(s.path);
      Object.assign(
        extras,
        repairExtras({
          plan: rec.plan,
          applied: true,
          target: s.name,
          after,
          ...(rec.journalPath ? { journalPath: basename(rec.journalPath) } : {}),
        }),
      );
    }
    // After a repair the report's findings are those from before it; the repair section says what it left.
    const result = rec?.beforeCheck ?? s.check!;
    const text = await reportContent(args.format, { ...result, filename: s.name }, s.image, extras);
    const bytes = new TextEncoder().encode(text);
    const mime = args.format === 'html' ? 'text/html' : 'application/json';
    const path = await outputPath(args.save, s.path, `.report.${args.format}`);
    if (path === undefined)
      return {
        name: `${basename(s.name).replace(/\.(qcow2|qcow|img)$/i, '')}.report.${args.format}`,
        bytes,
        mime,
        size: bytes.length,
      };
    await writeOutputFile(path, bytes, { root: confinementOf(ctx.host, path) });
    return { name: displayName(ctx, s, path), size: bytes.length, mime };
  },

  'image.strip': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    // `what` names optional parts; strip keeps every metadata structure (so findings reproduce)
    // and drops all guest data, whatever is asked.
    void args.what;
    const path = await outputPath(args.save, s.path, '.stripped.qcow2');
    if (path === undefined) {
      const size = await s.io.size();
      if (size > MAX_INLINE_STRIP)
        throw new ContractError(
          'invalid-argument',
          `the stripped copy would be ${size} bytes long: save it next to the image instead of downloading it`,
          { field: 'args.save.kind', value: 'inline' },
        );
      const mem = new MemoryIO(new Uint8Array(0), 'stripped');
      await stripIO(s.io, mem, { cancel: ctx.cancel, onProgress: ctx.progress });
      const bytes = mem.snapshot();
      const out: SavedOutput = {
        name: `${basename(s.name).replace(/\.(qcow2|qcow|img)$/i, '')}.stripped.qcow2`,
        bytes,
        mime: 'application/octet-stream',
        size: bytes.length,
      };
      return out;
    }
    const r = await stripFile(s.path, path, {
      cancel: ctx.cancel,
      onProgress: ctx.progress,
      outputRoot: confinementOf(ctx.host, path),
    });
    return { name: displayName(ctx, s, path), size: r.fileSize, mime: 'application/octet-stream' };
  },
};
