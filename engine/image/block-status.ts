// Block status of a chain, as `qemu-img map` computes it (qemu-img.c get_block_status over
// block/io.c bdrv_co_block_status and the qcow2/raw/file drivers of QEMU 7.2): for a guest range,
// the first layer that defines it (DATA or ZERO), with its host offset when the bytes have one.
import * as C from '../format/constants.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { ChainLayer, ImageChain } from './backing-chain.js';
import { HostHoles } from './host-holes.js';
import { localPath } from './paths.js';
import { SeekProbe } from './seek-probe.js';
import { Qcow2LayerMap, RawLayerMap, SegKind, type LayerMap } from './layer-map.js';
import type { Qcow2Image } from './qcow2-image.js';

/** One block-status answer (QEMU's MapEntry before merging). */
export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Host offset in `filename` (absent when the bytes have no raw location). */
  offset?: number;
  /** The file `offset` refers to. */
  filename?: string;
}

interface StatusLayer {
  map: LayerMap;
  layer: ChainLayer;
  /** qcow2 with metadata preallocation: data ranges are refined by the host file's holes. */
  recurse: boolean;
  encrypted: boolean;
  /** Hole probes per host file this layer maps into. */
  holes: Map<PositionalIO, HostHoles>;
}

export class BlockStatus {
  private probe: Promise<SeekProbe | undefined> | undefined;

  private constructor(private readonly layers: StatusLayer[]) {}

  /** Block status over an opened chain; call close() afterwards (it may own a helper process). */
  static async open(chain: ImageChain): Promise<BlockStatus> {
    const layers: StatusLayer[] = [];
    const bs = new BlockStatus(layers);
    const getProbe = () => (bs.probe ??= SeekProbe.start());
    const holesFor = (io: PositionalIO, allocated: number | undefined, name: string) =>
      new HostHoles(io, allocated, localPath(name), getProbe);
    for (const l of chain.layers) {
      const holes = new Map<PositionalIO, HostHoles>();
      holes.set(l.io, holesFor(l.io, l.allocatedBytes, l.filename));
      if (l.image) {
        const map = Qcow2LayerMap.active(l.image, l.dataFile?.io);
        const recurse = await detectMetadataPreallocation(l.image, l.allocatedBytes);
        if (l.dataFile)
          holes.set(l.dataFile.io, holesFor(l.dataFile.io, l.dataFile.allocatedBytes, l.dataFile.filename));
        layers.push({ map, layer: l, recurse, encrypted: l.image.header.cryptMethod !== C.CRYPT_NONE, holes });
      } else {
        layers.push({ map: new RawLayerMap(l.io, l.virtualSize), layer: l, recurse: false, encrypted: false, holes });
      }
    }
    return bs;
  }

  /** Stop the SEEK_DATA helper if one was started. */
  async close(): Promise<void> {
    const p = await this.probe;
    p?.close();
  }

  get size(): number {
    return this.layers[0]!.map.size;
  }

  /** qemu-img.c get_block_status: walk down the chain until a layer defines [off, off+bytes). */
  async at(off: number, bytes: number): Promise<MapEntry> {
    let depth = 0;
    for (;;) {
      const st = await this.layerStatus(depth, off, bytes);
      bytes = st.length;
      const below = this.layers[depth + 1];
      if (st.data || st.zero || !below) {
        const e: MapEntry = { start: off, length: bytes, depth, present: st.allocated, zero: st.zero, data: st.data };
        if (st.offset !== undefined) {
          e.offset = st.offset;
          e.filename = st.filename;
        }
        return e;
      }
      depth++;
    }
  }

  /**
   * Every entry of the disk in guest order, unmerged. QEMU probes at most 1 GiB at a time; after
   * merging that makes no difference, so each probe here asks for the rest of the disk (a huge
   * sparse disk is then a few probes, not one per GiB).
   */
  async *entries(): AsyncGenerator<MapEntry> {
    let off = 0;
    const size = this.size;
    while (off < size) {
      const e = await this.at(off, size - off);
      yield e;
      off += e.length;
    }
  }

  /** bdrv_co_block_status of one layer (driver answer + the generic layer's adjustments). */
  private async layerStatus(depth: number, off: number, bytes: number): Promise<LayerStatus> {
    const l = this.layers[depth]!;
    const n = Math.min(bytes, l.map.size - off);
    const seg = await l.map.segment(off, n);
    const st: LayerStatus = { length: Math.min(seg.length, n), data: false, zero: false, allocated: false };
    const isRaw = !l.layer.image;
    if (isRaw) {
      // raw format → the file driver: data or hole, always with an offset.
      const h = await l.holes.get(l.layer.io)!.status(off, st.length);
      st.length = h.length;
      if (h.hole) st.zero = true;
      else st.data = true;
      st.offset = off;
      st.filename = l.layer.filename;
    } else {
      const hasHost = seg.host >= 0 && !l.encrypted;
      if (hasHost && seg.kind !== SegKind.Compressed) {
        st.offset = seg.host;
        st.filename = seg.file === l.layer.io ? l.layer.filename : (l.layer.dataFile?.filename ?? l.layer.filename);
      }
      if (seg.kind === SegKind.Zero) st.zero = true;
      else if (seg.kind === SegKind.Data || seg.kind === SegKind.Compressed) st.data = true;
      if (l.recurse && st.data && st.offset !== undefined && seg.file) {
        // BDRV_BLOCK_RECURSE: ask the host file whether the range is a hole.
        const fileSize = await seg.file.size();
        if (st.offset >= fileSize) st.zero = true;
        else {
          const h = await l.holes.get(seg.file)!.status(st.offset, st.length);
          // block/io.c: a hole reaching EOF makes the whole range zero; otherwise the range is
          // limited to the file's answer.
          if (h.eof && h.hole) st.zero = true;
          else {
            st.length = h.length;
            if (h.hole) st.zero = true;
          }
        }
      }
    }
    if (st.data || st.zero) st.allocated = true;
    else {
      const below = this.layers[depth + 1];
      if (!below || off >= below.map.size) st.zero = true;
      else st.length = Math.min(st.length, below.map.size - off);
    }
    return st;
  }
}

interface LayerStatus {
  length: number;
  data: boolean;
  zero: boolean;
  allocated: boolean;
  offset?: number;
  filename?: string;
}

/**
 * QEMU's qcow2_detect_metadata_preallocation: the image counts as metadata-preallocated when the
 * clusters with a non-zero refcount outnumber the clusters the file system really allocates
 * (threshold max(real * 10 / 9, real + 2)).
 */
export async function detectMetadataPreallocation(
  image: Qcow2Image,
  allocatedBytes: number | undefined,
): Promise<boolean> {
  if (allocatedBytes === undefined) return false;
  const cs = image.clusterSize;
  const real = Math.floor(allocatedBytes / cs);
  const threshold = Math.max(Math.floor((real * 10) / 9), real + 2);
  const end = Math.ceil(image.fileSize / cs);
  let count = 0;
  for (let i = 0; i < end && count < threshold; i++) {
    try {
      if ((await image.refcount(i)) !== 0) count++;
    } catch {
      return false;
    }
  }
  return count >= threshold;
}
