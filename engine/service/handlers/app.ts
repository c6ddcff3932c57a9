// app.hello, files.list, recent.list, recent.forget.
import { CONTRACT_VERSION } from '../../contract/contract.js';
import { ContractError } from '../../contract/errors.js';
import type { HandlerTable } from '../handler.js';
import { VERSION } from '../../base/version.js';

export const handlers: HandlerTable = {
  'app.hello': async (_args, ctx) => {
    const hello = {
      version: VERSION,
      contractVersion: CONTRACT_VERSION,
      host: ctx.host.kind,
      available: ctx.available(),
      samples: ctx.host.samples,
    };
    return ctx.host.rootName === undefined ? hello : { ...hello, root: ctx.host.rootName };
  },
  'files.list': async (args, ctx) => {
    if (!ctx.host.listFiles)
      throw new ContractError('not-available', 'files.list is only available when serving a folder');
    return ctx.host.listFiles(args.dir);
  },
  'recent.list': async (_args, ctx) => ctx.host.recent.list(),
  'recent.forget': async (args, ctx) => {
    ctx.host.recent.forget(args.id);
    return { ok: true };
  },
};
