/**
 * The Overview view's data: the header decoded field by field, features by name with what they
 * mean, header extensions, snapshots, bitmaps and the backing chain. Reads only.
 */
import { basename } from 'node:path';
import * as C from '../format/constants.js';
import { walkBitmapDirectory } from '../format/bitmap.js';
import { featureNames } from '../format/header.js';
import { u32 } from '../format/bytes.js';
import { type ImageChain, openChain } from '../image/backing-chain.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { openInputFile } from '../io/input-file.js';
import { readPadded } from '../io/positional-io.js';
import type {
  BackingLayer,
  BitmapInfo,
  ExtensionInfo,
  FeatureInfo,
  HeaderField,
  Overview,
  SnapshotInfo,
} from '../contract/contract.js';

const EXT_NAMES: Record<number, string> = {
  [C.EXT_BACKING_FORMAT]: 'backing file format',
  [C.EXT_FEATURE_TABLE]: 'feature name table',
  [C.EXT_BITMAPS]: 'bitmaps',
  [C.EXT_CRYPTO_HEADER]: 'full disk encryption header pointer',
  [C.EXT_DATA_FILE]: 'external data file name',
};

const MEANINGS: Record<string, string> = {
  '0:0':
    'The image was not closed cleanly while refcounts were updated lazily; refcounts may be stale until a check repairs them.',
  '0:1':
    'QEMU found metadata pointing where it must not and marked the image corrupt; it opens read-only until repaired.',
  '0:2': 'Guest data lives in a separate raw file named by the data-file extension.',
  '0:3': 'Compressed clusters use the compression type in the header (not zlib).',
  '0:4': 'L2 entries are 128 bits with 32 subclusters each.',
  '1:0': 'Refcount updates may be delayed; a crash sets the dirty bit and needs a check.',
  '2:0': 'Persistent dirty bitmaps in the bitmaps extension are consistent with the data.',
  '2:1': 'The external data file is a valid raw image on its own.',
};

const TYPE_NAMES = ['incompatible', 'compatible', 'autoclear'] as const;
const size = (n: number): string => {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v} ${units[u]} (${n} bytes)`;
};
const hexo = (n: number): string => `0x${n.toString(16)}`;

function features(image: Qcow2Image): FeatureInfo[] {
  const h = image.header;
  const out: FeatureInfo[] = [];
  const words: Array<[0 | 1 | 2, bigint]> = [
    [0, h.incompatibleFeatures],
    [1, h.compatibleFeatures],
    [2, h.autoclearFeatures],
  ];
  for (const [type, bits] of words) {
    const names = featureNames(h, type, bits);
    let i = 0;
    for (let bit = 0; bit < 64; bit++) {
      if ((bits & (1n << BigInt(bit))) === 0n) continue;
      out.push({
        type: TYPE_NAMES[type],
        bit,
        name: names[i++] ?? `bit ${bit}`,
        meaning: MEANINGS[`${type}:${bit}`] ?? 'Not known to this tool.',
      });
    }
  }
  return out;
}

function extensions(image: Qcow2Image): ExtensionInfo[] {
  const h = image.header;
  return h.extensions.map((e) => {
    let summary = `${e.length} bytes`;
    if (e.type === C.EXT_BACKING_FORMAT) summary = h.backingFormat ?? '';
    else if (e.type === C.EXT_FEATURE_TABLE) summary = `${h.featureTable.length} named features`;
    else if (e.type === C.EXT_BITMAPS && h.bitmaps)
      summary = `${h.bitmaps.nbBitmaps} bitmaps, directory at ${hexo(h.bitmaps.directoryOffset)} (${h.bitmaps.directorySize} bytes)`;
    else if (e.type === C.EXT_DATA_FILE) summary = h.dataFileName ?? '';
    else if (e.type === C.EXT_CRYPTO_HEADER && h.crypto)
      summary = `at ${hexo(h.crypto.offset)}, ${h.crypto.length} bytes`;
    return {
      type: `0x${e.type.toString(16).padStart(8, '0')}`,
      name: EXT_NAMES[e.type] ?? 'unknown extension',
      length: e.length,
      known: e.known,
      summary,
    };
  });
}

async function snapshots(image: Qcow2Image): Promise<{ list: SnapshotInfo[]; error?: string }> {
  try {
    const { entries } = await image.readSnapshots();
    return {
      list: entries.map((s) => ({
        id: s.id,
        name: s.name,
        vmStateSize: s.vmStateSize,
        date: new Date(s.dateSec * 1000).toISOString(),
        virtualSize: s.diskSize ?? image.virtualSize,
        l1Size: s.l1Size,
        l1TableOffset: s.l1TableOffset,
      })),
    };
  } catch (e) {
    return { list: [], error: e instanceof Error ? e.message : String(e) };
  }
}

/** Bitmap directory entries (names, granularity, flags); bounded by the extension's validated size. */
async function bitmaps(image: Qcow2Image): Promise<{ list: BitmapInfo[]; error?: string }> {
  const b = image.header.bitmaps;
  if (!b || b.directorySize === 0) return { list: [] };
  try {
    const dir = await image.readStructure(
      b.directoryOffset,
      Math.min(b.directorySize, C.QCOW_MAX_BITMAP_DIRECTORY_SIZE),
      'bitmap directory',
    );
    const { entries, problem } = walkBitmapDirectory(dir, b.nbBitmaps);
    const list = entries.map(
      (e): BitmapInfo => ({
        name: e.name,
        granularity: 2 ** e.granularityBits,
        flags: [
          ...(e.flags & 1 ? ['in-use'] : []),
          ...(e.flags & 2 ? ['auto'] : []),
          ...(e.flags & 4 ? ['extra-data-compatible'] : []),
        ],
        tableOffset: e.tableOffset,
        tableSize: e.tableSize,
      }),
    );
    return problem === undefined ? { list } : { list, error: problem };
  } catch (e) {
    return { list: [], error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * The backing chain as the image's one chain follower opens it (metadata only: no data files), with
 * its rules: `allowed` confines every backing file (serve: the root), at most
 * MAX_BACKING_CHAIN_DEPTH layers, never a loop. A layer that cannot be opened ends the list,
 * marked not present. Each layer is named as its overlay records it.
 */
async function backingChain(
  image: Qcow2Image,
  path: string,
  allowed: (p: string) => Promise<boolean>,
): Promise<BackingLayer[]> {
  const first = image.header.backingFile;
  if (first === undefined || first === '') return [];
  const out: BackingLayer[] = [];
  const unreached = (depth: number, name: string, format: string | undefined): void => {
    const layer: BackingLayer = { depth, name, present: false };
    if (format !== undefined) layer.format = format;
    out.push(layer);
  };
  if (!(await allowed(path))) {
    unreached(1, first, image.header.backingFormat);
    return out;
  }
  let chain: ImageChain;
  try {
    chain = await openChain(path, { partial: true, noDataFile: true, checkMode: true, mayRead: allowed });
  } catch {
    // A loop, a chain too deep, a backing format we do not read: the first name, not followed.
    unreached(1, first, image.header.backingFormat);
    return out;
  }
  try {
    for (let depth = 1; depth < chain.layers.length; depth++) {
      const overlay = chain.layers[depth - 1]!.image!.header;
      const layer: BackingLayer = { depth, name: overlay.backingFile!, present: true };
      if (overlay.backingFormat !== undefined) layer.format = overlay.backingFormat;
      layer.virtualSize = chain.layers[depth]!.virtualSize;
      out.push(layer);
    }
    const stop = chain.stoppedAt;
    const last = chain.layers[chain.layers.length - 1]!.image?.header;
    if (stop && last?.backingFile !== undefined) unreached(stop.depth, last.backingFile, last.backingFormat);
  } finally {
    await chain.close();
  }
  return out;
}

export async function buildOverview(
  image: Qcow2Image,
  path: string,
  allowedBacking: (p: string) => Promise<boolean>,
): Promise<Overview> {
  const h = image.header;
  const g = image.geo;
  const dirty = image.isDirty;
  const corrupt = image.isCorrupt;
  const stateNote = corrupt
    ? 'Marked corrupt: QEMU refuses to write to it until `qemu-img check -r all` (or our repair) fixes it.'
    : dirty
      ? 'Dirty: not closed cleanly with lazy refcounts; QEMU rebuilds the refcounts on the next read-write open.'
      : 'Clean: closed cleanly, no corruption recorded.';
  const fields: HeaderField[] = [
    { name: 'magic', value: 'QFI\\xfb' },
    {
      name: 'version',
      value: String(h.version),
      note: h.version === 2 ? 'qcow2 v2 (compat=0.10): no feature bits' : 'qcow2 v3 (compat=1.1)',
    },
    { name: 'cluster_bits', value: String(h.clusterBits), note: `clusters of ${size(g.clusterSize)}` },
    { name: 'size', value: String(h.size), note: `virtual disk of ${size(h.size)}` },
    {
      name: 'crypt_method',
      value: String(h.cryptMethod),
      note: ['not encrypted', 'AES (legacy, insecure)', 'LUKS'][h.cryptMethod] ?? '',
    },
    {
      name: 'l1_size',
      value: String(h.l1Size),
      note: `${g.l1EntriesNeeded} ${g.l1EntriesNeeded === 1 ? 'entry' : 'entries'} needed for the virtual size`,
    },
    { name: 'l1_table_offset', value: hexo(h.l1TableOffset) },
    { name: 'refcount_table_offset', value: hexo(h.refcountTableOffset) },
    { name: 'refcount_table_clusters', value: String(h.refcountTableClusters) },
    { name: 'nb_snapshots', value: String(h.nbSnapshots) },
    { name: 'snapshots_offset', value: hexo(h.snapshotsOffset) },
  ];
  if (h.backingFileOffset)
    fields.push({
      name: 'backing_file',
      value: h.backingFile ?? '',
      note: `at ${hexo(h.backingFileOffset)}, ${h.backingFileSize} bytes`,
    });
  if (h.version === 3) {
    fields.push(
      { name: 'incompatible_features', value: `0x${h.incompatibleFeatures.toString(16)}` },
      { name: 'compatible_features', value: `0x${h.compatibleFeatures.toString(16)}` },
      { name: 'autoclear_features', value: `0x${h.autoclearFeatures.toString(16)}` },
      { name: 'refcount_order', value: String(h.refcountOrder), note: `${g.refcountBits}-bit refcounts` },
      { name: 'header_length', value: String(h.headerLength) },
      {
        name: 'compression_type',
        value: String(h.compressionType),
        note: h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
      },
    );
  }
  const [snaps, bms, backing] = await Promise.all([
    snapshots(image),
    bitmaps(image),
    backingChain(image, path, allowedBacking),
  ]);
  const ov: Overview = {
    name: basename(path),
    fileSize: image.fileSize,
    version: h.version,
    clusterSize: g.clusterSize,
    clusterBits: h.clusterBits,
    virtualSize: h.size,
    refcountBits: g.refcountBits,
    hostClusters: Math.ceil(image.fileSize / g.clusterSize),
    guestClusters: Math.ceil(h.size / g.clusterSize),
    extendedL2: g.extendedL2,
    compression: h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
    encryption: h.cryptMethod === C.CRYPT_LUKS ? 'luks' : h.cryptMethod === C.CRYPT_AES ? 'aes' : 'none',
    dirty,
    corrupt,
    stateNote,
    fields,
    features: features(image),
    extensions: extensions(image),
    snapshots: snaps.list,
    bitmaps: bms.list,
    backing,
  };
  if (snaps.error !== undefined) ov.snapshotsError = snaps.error;
  if (bms.error !== undefined) ov.bitmapsError = bms.error;
  if (h.dataFileName !== undefined) ov.dataFile = h.dataFileName;
  return ov;
}

/** Read the first bytes of a file to tell whether it is qcow2 (for file lists). */
export async function looksLikeQcow2(path: string): Promise<boolean> {
  try {
    const io = await openInputFile(path);
    try {
      const b = await readPadded(io, 0, 4);
      return u32(b, 0) === C.QCOW2_MAGIC;
    } finally {
      await io.close();
    }
  } catch {
    return false;
  }
}
