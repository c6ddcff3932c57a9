/**
 * Where one guest cluster lives: its L1/L2 path and host offset, read straight from the tables
 * (one L2 entry read), so a click on the guest map is answered without a full walk.
 */
import { GUEST_STATE_NAMES, GuestState } from '../contract/roles.js';
import { hex64, u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import { type ChainLayer, type ChainStop, type ImageChain, openChain } from '../image/backing-chain.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { GuestLocation } from '../contract/contract.js';

export async function locateGuestCluster(image: Qcow2Image, guestCluster: number): Promise<GuestLocation> {
  const g = image.geo;
  const l1Index = Math.floor(guestCluster / g.l2Entries);
  const l2Index = guestCluster % g.l2Entries;
  const hasBacking = image.header.backingFile !== undefined;
  const out: GuestLocation = {
    guestCluster,
    guestOffset: guestCluster * g.clusterSize,
    state: GuestState.Unallocated,
    stateName: '',
    l1Index,
    l2Index,
  };
  const name = (st: GuestState): string => GUEST_STATE_NAMES[st] ?? String(st);
  const unallocated = (): GuestLocation => {
    out.state = hasBacking ? GuestState.Backing : GuestState.Unallocated;
    if (hasBacking) out.backingDepth = 1;
    out.stateName = name(out.state);
    return out;
  };
  if (l1Index * 8 + 8 > image.l1.length) return unallocated();
  const l2Table = l1Offset(u32(image.l1, l1Index * 8), u32(image.l1, l1Index * 8 + 4));
  if (l2Table === 0) return unallocated();
  out.l2Table = l2Table;
  if (l2Table % g.clusterSize !== 0 || l2Table >= image.fileSize) {
    out.state = GuestState.Invalid;
    out.stateName = name(out.state);
    return out;
  }
  const e = await readPadded(image.io, l2Table + l2Index * g.l2EntrySize, g.l2EntrySize);
  const hi = u32(e, 0);
  const lo = u32(e, 4);
  out.entry =
    hex64(hi, lo).padStart(16, '0') + (g.extendedL2 ? ` ${hex64(u32(e, 8), u32(e, 12)).padStart(16, '0')}` : '');
  const type = classifyL2(hi, lo, g.extendedL2, image.hasExternalData);
  switch (type) {
    case ClusterType.Unallocated:
      return unallocated();
    case ClusterType.ZeroPlain:
      out.state = GuestState.Zero;
      break;
    case ClusterType.ZeroAlloc:
      out.state = GuestState.Zero;
      out.hostOffset = l2Offset(hi, lo);
      break;
    case ClusterType.Compressed: {
      const d = decodeCompressed(hi, lo, g);
      out.state = GuestState.Compressed;
      out.hostOffset = d.offset;
      out.compressedSize = d.size;
      break;
    }
    case ClusterType.Normal: {
      out.state = GuestState.Data;
      out.hostOffset = l2Offset(hi, lo);
      if (g.extendedL2) {
        const alloc = u32(e, 12);
        if (alloc === 0)
          out.state =
            u32(e, 8) === 0xffffffff ? GuestState.Zero : hasBacking ? GuestState.Backing : GuestState.Unallocated;
        else if (alloc !== 0xffffffff) out.state = GuestState.Partial;
      }
      if (out.hostOffset % g.clusterSize !== 0) out.state = GuestState.Invalid;
      break;
    }
  }
  if (out.hostOffset !== undefined) out.hostCluster = Math.floor(out.hostOffset / g.clusterSize);
  out.stateName = name(out.state);
  return out;
}

/**
 * Follow the backing chain for a guest offset the top image does not hold: the first layer that
 * has data (or zeroes) for it, with its host offset in that layer's file. The chain is opened by
 * the image's one chain follower (metadata only), with its rules: `mayRead` confines every layer
 * (serve: the root), MAX_BACKING_CHAIN_DEPTH layers at most, never a loop. Reads one L1/L2 entry
 * per layer. Layers are named as their overlay records them.
 */
export async function locateInBacking(
  image: Qcow2Image,
  path: string,
  guestOffset: number,
  mayRead: (p: string) => Promise<boolean>,
): Promise<GuestLocation['backingLayer']> {
  const first = image.header.backingFile;
  if (first === undefined || first === '') return undefined;
  if (!(await mayRead(path))) return { depth: 1, name: first, stateName: 'not readable here' };
  let chain: ImageChain;
  try {
    chain = await openChain(path, { partial: true, noDataFile: true, checkMode: true, mayRead });
  } catch (e) {
    return { depth: 1, name: first, stateName: `unreadable: ${e instanceof Error ? e.message : String(e)}` };
  }
  try {
    for (let depth = 1; depth < chain.layers.length; depth++) {
      const name = chain.layers[depth - 1]!.image!.header.backingFile!;
      const found = await lookIn(chain.layers[depth]!, depth, name, guestOffset);
      if (found) return found;
    }
    const stop = chain.stoppedAt;
    const last = chain.layers[chain.layers.length - 1]!.image?.header.backingFile;
    if (!stop || last === undefined) return undefined;
    return { depth: stop.depth, name: last, stateName: stoppedState(stop) };
  } finally {
    await chain.close();
  }
}

/** What layer `depth` of a chain holds at `guestOffset` (undefined: it defers to its own backing file). */
async function lookIn(
  layer: ChainLayer,
  depth: number,
  name: string,
  guestOffset: number,
): Promise<GuestLocation['backingLayer']> {
  if (guestOffset >= layer.virtualSize) return { depth, name, stateName: 'zero (past the end)' };
  if (!layer.image) return { depth, name, stateName: 'data (raw)', hostOffset: guestOffset };
  const img = layer.image;
  try {
    const loc = await locateGuestCluster(img, Math.floor(guestOffset / img.clusterSize));
    if (loc.state === GuestState.Backing) return undefined;
    const out: NonNullable<GuestLocation['backingLayer']> = { depth, name, stateName: loc.stateName };
    if (loc.hostOffset !== undefined)
      out.hostOffset = loc.hostOffset + (loc.state === GuestState.Compressed ? 0 : guestOffset % img.clusterSize);
    return out;
  } catch (e) {
    return { depth, name, stateName: `unreadable: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** Why the chain ends before the layer: our confinement, a missing file, or what QEMU would refuse. */
function stoppedState(stop: ChainStop): string {
  if (stop.kind === 'not-allowed' || stop.kind === 'protocol') return 'not readable here';
  if (/No such file or directory$/.test(stop.reason)) return 'missing';
  return `unreadable: ${stop.reason}`;
}
