// image.open, image.close, image.overview, bytes.read, guest.locate.
import { dirname } from 'node:path';
import { Qcow2Image } from '../../image/qcow2-image.js';
import { openInputFile } from '../../io/input-file.js';
import { GUEST_STATE_NAMES, GuestState } from '../../contract/roles.js';
import { ContractError, toWireError } from '../../contract/errors.js';
import { confinementOf, type HandlerContext, type HandlerTable } from '../handler.js';
import type { Session } from '../session.js';
import { buildOverview } from '../overview.js';
import { guessContent } from '../../triage/content-kind.js';
import { locateGuestCluster, locateInBacking } from '../locate.js';

async function overviewOf(s: Session, ctx: HandlerContext) {
  const may = ctx.host.mayRead ? ctx.host.mayRead.bind(ctx.host) : async () => true;
  return buildOverview(s.image, s.path, may);
}

/**
 * An image that cannot be opened (bad header, unreadable tables) is exactly the one salvage is for:
 * the refusal keeps its error and carries a salvage-source handle (sent as WireError.salvageSource)
 * so the wizard can offer salvage without a second file dialog.
 */
async function unopenable(e: unknown, path: string, name: string, ctx: HandlerContext): Promise<unknown> {
  const code = toWireError(e).code;
  if (!((code === 'format' || code === 'io') && e instanceof Error)) return e;
  // A text file or a raw disk has nothing for salvage to find: say what it is instead.
  const guess = await guessContent(path).catch(() => null);
  if (guess && guess.kind !== 'damaged-header' && /not in qcow2 format/.test(e.message)) {
    e.message += ` — ${guess.kind === 'raw-disk' ? guess.why : `not a disk image (${guess.why})`}`;
    return e;
  }
  Object.assign(e, { salvageSource: ctx.sessions.addSource(path, name).handle, salvageName: name });
  return e;
}

export const handlers: HandlerTable = {
  'image.open': async (args, ctx) => {
    const { path, name, location } = await ctx.host.resolve(args.ref);
    // The check on the open descriptor: a folder swapped for a link after the look-up is refused.
    const io = await openInputFile(path, { root: confinementOf(ctx.host, path), name: path });
    let image: Qcow2Image;
    try {
      image = await Qcow2Image.open(io, { checkMode: true });
    } catch (e) {
      await io.close();
      throw await unopenable(e, path, name, ctx);
    }
    const session = ctx.sessions.add({ path, name, io, image });
    const recent = ctx.host.recent.touch(
      path,
      name,
      location ?? (ctx.host.kind === 'electron' ? dirname(path) : undefined),
    );
    const overview = await overviewOf(session, ctx);
    overview.name = name;
    return { handle: session.handle, name, overview, recentId: recent.id };
  },
  'image.close': async (args, ctx) => {
    await ctx.sessions.close(args.handle);
    return { ok: true };
  },
  'image.overview': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const ov = await overviewOf(s, ctx);
    ov.name = s.name;
    return ov;
  },
  'bytes.read': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const fileSize = await s.io.size();
    if (args.offset > fileSize)
      throw new ContractError(
        'invalid-argument',
        `offset ${args.offset} is past the end of the file (${fileSize} bytes)`,
        { field: 'args.offset', value: String(args.offset) },
      );
    const bytes = await s.io.read(args.offset, Math.min(args.length, fileSize - args.offset));
    return { offset: args.offset, bytes, fileSize };
  },
  'guest.locate': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const guestClusters = Math.ceil(s.image.virtualSize / s.image.clusterSize);
    if (args.guestCluster >= guestClusters)
      throw new ContractError(
        'invalid-argument',
        `guest cluster ${args.guestCluster} is past the virtual disk (${guestClusters} clusters)`,
        { field: 'args.guestCluster', value: String(args.guestCluster) },
      );
    const loc = await locateGuestCluster(s.image, args.guestCluster);
    const mapped = s.check?.guestMap?.[args.guestCluster];
    if (mapped !== undefined) {
      loc.state = mapped;
      loc.stateName = GUEST_STATE_NAMES[mapped] ?? `state ${mapped}`;
    }
    if (loc.state === GuestState.Backing) {
      const may = ctx.host.mayRead ? ctx.host.mayRead.bind(ctx.host) : async () => true;
      const layer = await locateInBacking(s.image, s.path, loc.guestOffset, may);
      if (layer) {
        loc.backingLayer = layer;
        loc.backingDepth = layer.depth;
      }
    }
    return loc;
  },
};
