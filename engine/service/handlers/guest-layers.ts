// The guest map's layers: for an image with a backing file, which layer of the chain each guest
// cluster is read from. Worked out once per check (a write or an undo runs a new check).
import { basename } from 'node:path';
import type { GuestMap } from '../../contract/contract.js';
import { CancelledError } from '../../base/errors.js';
import { openChain } from '../../image/backing-chain.js';
import { chainOrigins } from '../../image/chain-origin.js';
import type { HandlerContext } from '../handler.js';
import { scrubPaths } from '../path-scrub.js';
import type { Session } from '../session.js';

type Layers = Pick<GuestMap, 'layers' | 'layersError'>;
const cache = new WeakMap<object, Layers>();

export async function guestLayersOf(s: Session, ctx: HandlerContext): Promise<Layers> {
  const check = s.check;
  if (!check || s.image.header.backingFileOffset === 0) return {};
  const hit = cache.get(check);
  if (hit) return hit;
  let out: Layers;
  try {
    const chain = await openChain(s.path, {
      partial: true,
      checkMode: true,
      ...(ctx.host.mayRead ? { mayRead: ctx.host.mayRead.bind(ctx.host) } : {}),
    });
    try {
      const names = chain.layers.map((l, i) => (i === 0 ? s.name : basename(l.filename)));
      const layers = await chainOrigins(chain, s.image.clusterSize, { cancel: ctx.cancel, names });
      if (layers.stoppedAt !== undefined) layers.stoppedAt = scrub(layers.stoppedAt, ctx);
      out = { layers };
    } finally {
      await chain.close();
    }
  } catch (e) {
    if (e instanceof CancelledError) throw e;
    out = { layersError: scrub(e instanceof Error ? e.message : String(e), ctx) };
  }
  cache.set(check, out);
  return out;
}

/** Messages name files relative to the served root (serve), as every error that reaches a browser does. */
const scrub = (text: string, ctx: HandlerContext): string =>
  ctx.host.root === undefined ? text : scrubPaths(text, ctx.host.root);
