// Reading the guest disk of an opened chain: each guest range is resolved through the layers
// (qcow2 L1/L2, raw) down the backing chain into pieces — stored data, zeros, or a compressed
// cluster — and the pieces are read. Export and random reads share the same resolution.
import * as C from '../format/constants.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import { Qcow2FormatError, UnreadableError } from '../base/errors.js';
import type { CompressedDescriptor } from '../format/l2-entry.js';
import type { SnapshotEntry } from '../format/snapshot.js';
import type { ImageChain } from './backing-chain.js';
import { decompressCluster, DecompressionError } from './compressed.js';
import { hexAlt, Qcow2LayerMap, RawLayerMap, SegKind, type LayerMap } from './layer-map.js';
import type { Qcow2Image } from './qcow2-image.js';

export const enum PieceKind {
  /** Guest reads zeros (zero clusters, unallocated everywhere, past a backing file's end). */
  Zero = 0,
  /** Bytes stored raw in `file` at `host`. */
  Data = 1,
  /** Part of a compressed cluster of layer `depth`. */
  Compressed = 2,
}

/** A resolved guest range. */
export interface Piece {
  kind: PieceKind;
  guest: number;
  length: number;
  /** Layer the bytes come from (for zeros: the layer that decided they are zero). */
  depth: number;
  file?: PositionalIO;
  host?: number;
  compressed?: CompressedDescriptor;
  /** Guest offset where the compressed cluster starts. */
  clusterStart?: number;
}

export interface GuestReaderOptions {
  /** Read an internal snapshot of the top image (by ID first, then by name, as QEMU looks it up). */
  snapshot?: string;
}

interface Layer {
  map: LayerMap;
  image?: Qcow2Image;
  filename: string;
}

/** Decompressed clusters kept for small sequential reads. */
const COMPRESSED_CACHE_ENTRIES = 8;

/**
 * The guest view of a chain (or of a snapshot of its top image). Reading never writes. Encrypted
 * layers are refused when the reader is created: guest data is not decrypted. Ranges no layer
 * defines read as zeros — including when the chain was opened with `noBacking`.
 */
export class GuestReader {
  private readonly cache = new Map<string, Uint8Array>();

  private constructor(
    private readonly layers: Layer[],
    readonly size: number,
  ) {}

  static async open(chain: ImageChain, opts: GuestReaderOptions = {}): Promise<GuestReader> {
    const layers: Layer[] = [];
    for (const l of chain.layers) {
      if (l.image) {
        refuseEncrypted(l.image, l.filename);
        let map: Qcow2LayerMap;
        if (l.depth === 0 && opts.snapshot !== undefined) {
          const sn = await findSnapshot(l.image, opts.snapshot, l.filename);
          map = await Qcow2LayerMap.snapshot(l.image, sn, l.dataFile?.io);
        } else {
          map = Qcow2LayerMap.active(l.image, l.dataFile?.io);
        }
        layers.push({ map, image: l.image, filename: l.filename });
      } else {
        if (l.depth === 0 && opts.snapshot !== undefined)
          throw new UnreadableError(`'${l.filename}' is a raw image: it has no internal snapshots`);
        layers.push({ map: new RawLayerMap(l.io, l.virtualSize), filename: l.filename });
      }
    }
    return new GuestReader(layers, layers[0]!.map.size);
  }

  /**
   * Resolve guest range [off, off+len) (clamped to the disk) into pieces, in guest order. Adjacent
   * pieces are not merged; callers batch as they need.
   */
  async resolve(off: number, len: number, emit: (p: Piece) => void | Promise<void>): Promise<void> {
    const end = Math.min(off + len, this.size);
    if (off < 0 || !Number.isSafeInteger(off)) throw new RangeError(`guest offset ${off} invalid`);
    if (off < end) await this.resolveIn(0, off, end - off, emit);
  }

  private async resolveIn(
    depth: number,
    off: number,
    len: number,
    emit: (p: Piece) => void | Promise<void>,
  ): Promise<void> {
    const layer = this.layers[depth]!;
    const end = off + len;
    while (off < end) {
      const seg = await layer.map.segment(off, end - off);
      const n = Math.min(seg.length, end - off);
      switch (seg.kind) {
        case SegKind.Data:
          await emit({ kind: PieceKind.Data, guest: off, length: n, depth, file: seg.file!, host: seg.host });
          break;
        case SegKind.Zero:
          await emit({ kind: PieceKind.Zero, guest: off, length: n, depth });
          break;
        case SegKind.Compressed:
          await emit({
            kind: PieceKind.Compressed,
            guest: off,
            length: n,
            depth,
            compressed: seg.compressed!,
            clusterStart: seg.clusterStart!,
          });
          break;
        case SegKind.Unallocated: {
          const below = this.layers[depth + 1];
          const covered = below ? Math.max(0, Math.min(n, below.map.size - off)) : 0;
          if (covered > 0) await this.resolveIn(depth + 1, off, covered, emit);
          if (covered < n)
            await emit({
              kind: PieceKind.Zero,
              guest: off + covered,
              length: n - covered,
              depth: this.layers.length - 1,
            });
          break;
        }
      }
      off += n;
    }
  }

  /** Read guest bytes [off, off+len) (zeros past the end of the disk). */
  async read(off: number, len: number): Promise<Uint8Array> {
    const out = new Uint8Array(len);
    await this.resolve(off, len, async (p) => {
      const at = p.guest - off;
      if (p.kind === PieceKind.Data)
        out.set(await readHost(p.file!, p.host!, p.length, this.layers[p.depth]!.filename), at);
      else if (p.kind === PieceKind.Compressed) {
        const cluster = await this.compressedCluster(p);
        const from = p.guest - p.clusterStart!;
        out.set(cluster.subarray(from, from + p.length), at);
      }
    });
    return out;
  }

  /** The decompressed bytes of the cluster a Compressed piece belongs to (small LRU cache). */
  async compressedCluster(p: Piece): Promise<Uint8Array> {
    const key = `${p.depth}:${p.clusterStart}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const layer = this.layers[p.depth]!;
    const image = layer.image!;
    const d = p.compressed!;
    const field = `compressed cluster at guest offset ${hexAlt(p.clusterStart!)}`;
    if (d.offset >= image.fileSize)
      throw new Qcow2FormatError(
        `Compressed cluster data at ${hexAlt(d.offset)} beyond end of file (${image.fileSize} bytes)`,
        field,
        hexAlt(d.offset),
      );
    const input = await readPadded(image.io, d.offset, d.size);
    let out: Uint8Array;
    try {
      out = decompressCluster(input, {
        type: image.header.compressionType,
        clusterSize: image.clusterSize,
        lenient: false,
      }).data;
    } catch (e) {
      if (e instanceof DecompressionError)
        throw new Qcow2FormatError(
          `Could not decompress cluster: ${e.reason}`,
          field,
          `offset ${hexAlt(d.offset)}, ${d.sectors} sectors`,
        );
      throw e;
    }
    if (this.cache.size >= COMPRESSED_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, out);
    return out;
  }

  /** Name of the file a layer was opened from (for messages). */
  layerName(depth: number): string {
    return this.layers[depth]?.filename ?? '';
  }
}

/** Read stored data; a read that starts past the end of its file means a truncated image. */
export async function readHost(
  file: PositionalIO,
  host: number,
  length: number,
  layerName: string,
): Promise<Uint8Array> {
  const got = await file.read(host, length);
  if (got.length === length) return got;
  if (got.length === 0 && length > 0 && host >= (await file.size()))
    throw new UnreadableError(
      `Data at host offset ${hexAlt(host)} of '${file.name}' is beyond its end of file (${layerName} is truncated)`,
    );
  const out = new Uint8Array(length);
  out.set(got);
  return out;
}

/** Find a snapshot by ID first, then by name (QEMU's bdrv_snapshot_load_tmp_by_id_or_name). */
export async function findSnapshot(image: Qcow2Image, idOrName: string, filename: string): Promise<SnapshotEntry> {
  if (image.hasExternalData)
    throw new UnreadableError(`'${filename}' has an external data file: it cannot have internal snapshots`);
  const { entries } = await image.readSnapshots();
  const sn = entries.find((e) => e.id === idOrName) ?? entries.find((e) => e.name === idOrName);
  if (!sn)
    throw new UnreadableError(
      `Can't find snapshot '${idOrName}' in '${filename}' (it has ${entries.length} snapshot${entries.length === 1 ? '' : 's'})`,
    );
  return sn;
}

function refuseEncrypted(image: Qcow2Image, filename: string): void {
  const m = image.header.cryptMethod;
  if (m === C.CRYPT_NONE) return;
  const what = m === C.CRYPT_LUKS ? 'LUKS' : 'AES';
  throw new UnreadableError(
    `'${filename}' is encrypted (${what}, header.crypt_method = ${m}): qcow2-doctor shows its metadata but does not decrypt guest data`,
  );
}
