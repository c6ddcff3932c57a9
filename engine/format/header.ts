import * as C from './constants.js';
import { latin1, u32, u64, u64n, utf8 } from './bytes.js';
import { Qcow2FormatError } from '../base/errors.js';

export interface FeatureNameEntry {
  type: number;
  bit: number;
  name: string;
}

export interface HeaderExtension {
  type: number;
  /** Byte offset of the extension's data in cluster 0. */
  offset: number;
  length: number;
  data: Uint8Array;
  known: boolean;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  reserved: number;
  directorySize: number;
  directoryOffset: number;
}

export interface CryptoExtension {
  offset: number;
  length: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  extensions: HeaderExtension[];
  featureTable: FeatureNameEntry[];
  backingFormat?: string;
  backingFile?: string;
  dataFileName?: string;
  bitmaps?: BitmapsExtension;
  crypto?: CryptoExtension;
  /** Bytes between the known header fields and header_length (preserved on rewrite). */
  unknownHeaderFields: Uint8Array;
}

/** Quantities derived from the header that every reader needs. */
export interface Geometry {
  clusterBits: number;
  clusterSize: number;
  extendedL2: boolean;
  l2EntrySize: number;
  l2Entries: number;
  l2Bits: number;
  refcountOrder: number;
  refcountBits: number;
  refcountBlockEntries: number;
  refcountBlockBits: number;
  /** L1 entries needed to map the virtual size. */
  l1EntriesNeeded: number;
  /** Bytes of guest space covered by one L1 entry. */
  l1Coverage: number;
  subclusterSize: number;
  /** Compressed descriptor: bit position of the sector count and its mask. */
  csizeShift: number;
  csizeMask: number;
}

export function geometry(h: Qcow2Header): Geometry {
  const clusterSize = 2 ** h.clusterBits;
  const extendedL2 = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  const l2EntrySize = extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const l2Entries = clusterSize / l2EntrySize;
  const l2Bits = Math.log2(l2Entries);
  const refcountBits = 2 ** h.refcountOrder;
  const refcountBlockBits = h.clusterBits + 3 - h.refcountOrder;
  const l1Coverage = clusterSize * l2Entries;
  return {
    clusterBits: h.clusterBits,
    clusterSize,
    extendedL2,
    l2EntrySize,
    l2Entries,
    l2Bits,
    refcountOrder: h.refcountOrder,
    refcountBits,
    refcountBlockEntries: 2 ** refcountBlockBits,
    refcountBlockBits,
    l1EntriesNeeded: Math.ceil(h.size / l1Coverage),
    l1Coverage,
    subclusterSize: extendedL2 ? clusterSize / C.SUBCLUSTERS_PER_CLUSTER : clusterSize,
    csizeShift: 62 - (h.clusterBits - 8),
    csizeMask: 2 ** (h.clusterBits - 8) - 1,
  };
}

export interface DecodeOptions {
  /** Opened by the checker: tolerate what QEMU tolerates in check mode (no refcount table). */
  checkMode?: boolean;
}

const fail = (reason: string, field: string, value: string | number | bigint): never => {
  throw new Qcow2FormatError(reason, field, value);
};

/**
 * Decode and validate the header and its extensions from cluster 0 (or as much of it as exists),
 * in the order QEMU validates them, with QEMU's wording.
 */
export function decodeHeader(buf: Uint8Array, opts: DecodeOptions = {}): Qcow2Header {
  const f = decodeFixedFields(buf);
  const { version, clusterBits, clusterSize, headerLength, incompatibleFeatures } = f;

  const backingFileOffset = u64(buf, C.HDR.backingFileOffset);
  if (backingFileOffset > clusterSize)
    fail('Invalid backing file offset', 'header.backing_file_offset', backingFileOffset);
  const backingFileSize = u32(buf, C.HDR.backingFileSize);

  // Header extensions: from header_length to backing_file_offset (or the end of cluster 0).
  const extEnd = Math.min(backingFileOffset !== 0 ? backingFileOffset : clusterSize, buf.length);
  const extensions = readExtensions(buf, headerLength, extEnd);
  const compressionType = decodeCompressionType(buf, version, headerLength, incompatibleFeatures);
  const featureTable = decodeFeatureTable(extensions);
  refuseUnknownIncompatible(incompatibleFeatures, featureTable);

  if (f.refcountOrder > C.MAX_REFCOUNT_ORDER)
    fail('Reference count entry width too large; may not exceed 64 bits', 'header.refcount_order', f.refcountOrder);

  const extendedL2 = (incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  if (extendedL2 && clusterBits < C.MIN_EXTENDED_L2_CLUSTER_BITS)
    fail(`Unsupported subcluster size: ${clusterSize / C.SUBCLUSTERS_PER_CLUSTER}`, 'header.cluster_bits', clusterBits);
  const tables = decodeTables(buf, clusterSize, extendedL2, opts);

  const cryptMethod = u32(buf, C.HDR.cryptMethod);
  if (cryptMethod > C.CRYPT_LUKS)
    fail(`Unsupported encryption method ${cryptMethod}`, 'header.crypt_method', cryptMethod);

  const h: Qcow2Header = {
    version,
    backingFileOffset,
    backingFileSize,
    clusterBits,
    size: tables.size,
    cryptMethod,
    l1Size: tables.l1Size,
    l1TableOffset: tables.l1TableOffset,
    refcountTableOffset: tables.refcountTableOffset,
    refcountTableClusters: tables.refcountTableClusters,
    nbSnapshots: tables.nbSnapshots,
    snapshotsOffset: tables.snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures: f.compatibleFeatures,
    autoclearFeatures: f.autoclearFeatures,
    refcountOrder: f.refcountOrder,
    headerLength,
    compressionType,
    extensions,
    featureTable,
    unknownHeaderFields: buf.slice(
      Math.min(headerLength, version === 3 ? C.HEADER_V3_QEMU_LENGTH : C.HEADER_V2_LENGTH),
      headerLength,
    ),
  };
  decodeKnownExtensions(h, clusterSize);

  if (backingFileOffset !== 0) {
    if (backingFileSize > C.MAX_BACKING_FILE_NAME || backingFileSize > clusterSize - backingFileOffset)
      fail('Backing file name too long', 'header.backing_file_size', backingFileSize);
    if (backingFileOffset + backingFileSize > buf.length)
      fail('Backing file name beyond end of file', 'header.backing_file_offset', backingFileOffset);
    h.backingFile = utf8(buf, backingFileOffset, backingFileSize);
  }
  return h;
}

/** Magic, version, cluster size, the v3 feature words and the header length, checked in QEMU's order. */
function decodeFixedFields(buf: Uint8Array) {
  // The magic first: a short file that is not qcow2 at all should be named as such.
  const magic = buf.length >= 4 ? u32(buf, C.HDR.magic) : -1;
  if (magic !== C.QCOW2_MAGIC)
    fail('Image is not in qcow2 format', 'header.magic', magic < 0 ? `${buf.length} bytes` : `0x${magic.toString(16)}`);
  if (buf.length < C.HEADER_V2_LENGTH) fail('Image is not in qcow2 format', 'header', `${buf.length} bytes`);
  const version = u32(buf, C.HDR.version);
  if (version !== 2 && version !== 3) fail(`Unsupported qcow2 version ${version}`, 'header.version', version);
  const clusterBits = u32(buf, C.HDR.clusterBits);
  if (clusterBits < C.MIN_CLUSTER_BITS || clusterBits > C.MAX_CLUSTER_BITS)
    fail(`Unsupported cluster size: 2^${clusterBits}`, 'header.cluster_bits', clusterBits);
  const clusterSize = 2 ** clusterBits;

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  let headerLength = C.HEADER_V2_LENGTH;
  if (version === 3) {
    if (buf.length < C.HEADER_V3_MIN_LENGTH) fail('qcow2 header too short', 'header', `${buf.length} bytes`);
    incompatibleFeatures = u64n(buf, C.HDR.incompatibleFeatures);
    compatibleFeatures = u64n(buf, C.HDR.compatibleFeatures);
    autoclearFeatures = u64n(buf, C.HDR.autoclearFeatures);
    refcountOrder = u32(buf, C.HDR.refcountOrder);
    headerLength = u32(buf, C.HDR.headerLength);
    if (headerLength < C.HEADER_V3_MIN_LENGTH) fail('qcow2 header too short', 'header.header_length', headerLength);
  }
  if (headerLength > clusterSize) fail('qcow2 header exceeds cluster size', 'header.header_length', headerLength);
  if (headerLength > buf.length) fail('qcow2 header exceeds end of file', 'header.header_length', headerLength);
  return {
    version: version as 2 | 3,
    clusterBits,
    clusterSize,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
  };
}

function readExtensions(buf: Uint8Array, headerLength: number, extEnd: number): HeaderExtension[] {
  const extensions: HeaderExtension[] = [];
  let off = headerLength;
  while (off + 8 <= extEnd) {
    const type = u32(buf, off);
    const length = u32(buf, off + 4);
    off += 8;
    if (type === C.EXT_END) break;
    if (length > extEnd - off)
      fail('Header extension too large', `header_extension[0x${type.toString(16)}].length`, length);
    extensions.push({ type, offset: off, length, data: buf.slice(off, off + length), known: KNOWN_EXT.has(type) });
    off += Math.ceil(length / 8) * 8;
  }
  return extensions;
}

function decodeCompressionType(buf: Uint8Array, version: number, headerLength: number, incompat: bigint): number {
  let compressionType = C.COMPRESSION_ZLIB;
  if (version === 3 && headerLength > C.HDR.compressionType) compressionType = buf[C.HDR.compressionType]!;
  const compressionBit = (incompat & C.INCOMPAT_COMPRESSION) !== 0n;
  if (compressionType !== C.COMPRESSION_ZLIB && compressionType !== C.COMPRESSION_ZSTD)
    fail(`qcow2: unknown compression type: ${compressionType}`, 'header.compression_type', compressionType);
  if (compressionType === C.COMPRESSION_ZLIB && compressionBit)
    fail(
      'qcow2: Compression type incompatible feature bit must not be set',
      'header.incompatible_features',
      `0x${incompat.toString(16)}`,
    );
  if (compressionType !== C.COMPRESSION_ZLIB && !compressionBit)
    fail(
      'qcow2: Compression type incompatible feature bit must be set',
      'header.incompatible_features',
      `0x${incompat.toString(16)}`,
    );
  return compressionType;
}

function decodeFeatureTable(extensions: HeaderExtension[]): FeatureNameEntry[] {
  const featureTable: FeatureNameEntry[] = [];
  const ft = extensions.find((e) => e.type === C.EXT_FEATURE_TABLE);
  if (ft) {
    for (let i = 0; i + C.FEATURE_TABLE_ENTRY_SIZE <= ft.length; i += C.FEATURE_TABLE_ENTRY_SIZE) {
      let end = i + 2;
      while (end < i + C.FEATURE_TABLE_ENTRY_SIZE && ft.data[end] !== 0) end++;
      featureTable.push({ type: ft.data[i]!, bit: ft.data[i + 1]!, name: utf8(ft.data, i + 2, end - i - 2) });
    }
  }
  return featureTable;
}

/** QEMU refuses unknown incompatible bits, naming them from the feature table where it can. */
function refuseUnknownIncompatible(incompat: bigint, featureTable: FeatureNameEntry[]): void {
  const unknownIncompat = incompat & ~C.INCOMPAT_KNOWN_MASK;
  if (unknownIncompat === 0n) return;
  let rest = unknownIncompat;
  const names: string[] = [];
  for (const f of featureTable) {
    const mask = 1n << BigInt(f.bit);
    if (f.type === 0 && f.bit < 64 && (rest & mask) !== 0n) {
      names.push(f.name);
      rest &= ~mask;
    }
  }
  if (rest !== 0n) names.push(`Unknown incompatible feature: ${rest.toString(16)}`);
  fail(
    `Unsupported qcow2 feature(s): ${names.join(', ')}`,
    'header.incompatible_features',
    `0x${incompat.toString(16)}`,
  );
}

/** The refcount table, snapshot table and active L1 table fields, and the virtual size they must cover. */
function decodeTables(buf: Uint8Array, clusterSize: number, extendedL2: boolean, opts: DecodeOptions) {
  const refcountTableOffset = u64(buf, C.HDR.refcountTableOffset);
  const refcountTableClusters = u32(buf, C.HDR.refcountTableClusters);
  if (refcountTableClusters === 0 && !opts.checkMode)
    fail('Image does not contain a reference count table', 'header.refcount_table_clusters', 0);
  validateTable(
    refcountTableOffset,
    refcountTableClusters * (clusterSize / 8),
    8,
    C.QCOW_MAX_REFTABLE_SIZE,
    clusterSize,
    'Reference count table',
    'header.refcount_table',
  );

  const nbSnapshots = u32(buf, C.HDR.nbSnapshots);
  const snapshotsOffset = u64(buf, C.HDR.snapshotsOffset);
  if (!opts.checkMode)
    validateTable(
      snapshotsOffset,
      nbSnapshots,
      C.SNAPSHOT_ENTRY_FIXED_SIZE,
      C.SNAPSHOT_ENTRY_FIXED_SIZE * C.QCOW_MAX_SNAPSHOTS,
      clusterSize,
      'Snapshot table',
      'header.snapshots',
    );

  const l1Size = u32(buf, C.HDR.l1Size);
  const l1TableOffset = u64(buf, C.HDR.l1TableOffset);
  validateTable(l1TableOffset, l1Size, 8, C.QCOW_MAX_L1_SIZE, clusterSize, 'Active L1 table', 'header.l1_table');

  const size = u64(buf, C.HDR.size);
  const l2Entries = clusterSize / (extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD);
  const l1Needed = Math.ceil(size / (clusterSize * l2Entries));
  if (l1Needed > 0x7fffffff) fail('Image is too big', 'header.size', size);
  if (l1Size < l1Needed) fail('L1 table is too small', 'header.l1_size', l1Size);
  return { refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset, l1Size, l1TableOffset, size };
}

const KNOWN_EXT = new Set([
  C.EXT_BACKING_FORMAT,
  C.EXT_FEATURE_TABLE,
  C.EXT_BITMAPS,
  C.EXT_CRYPTO_HEADER,
  C.EXT_DATA_FILE,
]);

function decodeKnownExtensions(h: Qcow2Header, clusterSize: number): void {
  for (const e of h.extensions) {
    switch (e.type) {
      case C.EXT_BACKING_FORMAT:
        if (e.length > C.MAX_BACKING_FORMAT_LENGTH)
          fail(
            `ERROR: ext_backing_format: len=${e.length} too large (>=${C.MAX_BACKING_FORMAT_LENGTH + 1})`,
            'header_extension.backing_format.length',
            e.length,
          );
        h.backingFormat = latin1(e.data, 0, e.length);
        break;
      case C.EXT_DATA_FILE:
        h.dataFileName = utf8(e.data, 0, e.length);
        break;
      case C.EXT_CRYPTO_HEADER:
        if (h.cryptMethod !== C.CRYPT_LUKS)
          fail(
            'CRYPTO header extension only expected with LUKS encryption method',
            'header.crypt_method',
            h.cryptMethod,
          );
        if (e.length !== C.CRYPTO_EXT_SIZE)
          fail(
            `CRYPTO header extension size ${e.length}, but expected size ${C.CRYPTO_EXT_SIZE}`,
            'header_extension.crypto.length',
            e.length,
          );
        h.crypto = { offset: u64(e.data, 0), length: u64(e.data, 8) };
        if (h.crypto.offset % clusterSize !== 0)
          fail(
            `Encryption header offset '${h.crypto.offset}' is not a multiple of cluster size '${clusterSize}'`,
            'header_extension.crypto.offset',
            h.crypto.offset,
          );
        break;
      case C.EXT_BITMAPS: {
        if (e.length !== C.BITMAPS_EXT_SIZE)
          fail('bitmaps_ext: Invalid extension length', 'header_extension.bitmaps.length', e.length);
        const b: BitmapsExtension = {
          nbBitmaps: u32(e.data, 0),
          reserved: u32(e.data, 4),
          directorySize: u64(e.data, 8),
          directoryOffset: u64(e.data, 16),
        };
        if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) {
          // A program without bitmap support touched the file: the extension is stale (QEMU ignores it).
          h.bitmaps = b;
          break;
        }
        if (b.reserved !== 0)
          fail('bitmaps_ext: Reserved field is not zero', 'header_extension.bitmaps.reserved', b.reserved);
        if (b.nbBitmaps > C.QCOW_MAX_BITMAPS)
          fail(
            `bitmaps_ext: Image has ${b.nbBitmaps} bitmaps, exceeding the QEMU supported maximum of ${C.QCOW_MAX_BITMAPS}`,
            'header_extension.bitmaps.nb_bitmaps',
            b.nbBitmaps,
          );
        if (b.nbBitmaps === 0)
          fail('found bitmaps extension with zero bitmaps', 'header_extension.bitmaps.nb_bitmaps', 0);
        if (b.directoryOffset % clusterSize !== 0)
          fail(
            'bitmaps_ext: invalid bitmap directory offset',
            'header_extension.bitmaps.directory_offset',
            b.directoryOffset,
          );
        if (b.directorySize > C.QCOW_MAX_BITMAP_DIRECTORY_SIZE)
          fail(
            `bitmaps_ext: bitmap directory size (${b.directorySize}) exceeds the maximum supported size (${C.QCOW_MAX_BITMAP_DIRECTORY_SIZE})`,
            'header_extension.bitmaps.directory_size',
            b.directorySize,
          );
        h.bitmaps = b;
        break;
      }
    }
  }
  if (h.cryptMethod === C.CRYPT_LUKS && !h.crypto)
    fail(`Missing CRYPTO header for crypt method ${h.cryptMethod}`, 'header.crypt_method', h.cryptMethod);
}

/** QEMU's qcow2_validate_table: bound the size, require cluster alignment, no 64-bit overflow. */
function validateTable(
  offset: number,
  entries: number,
  entrySize: number,
  maxBytes: number,
  clusterSize: number,
  name: string,
  field: string,
): void {
  if (entries > maxBytes / entrySize) fail(`${name} too large`, `${field}_size`, entries);
  if (offset % clusterSize !== 0 || offset + entries * entrySize > Number.MAX_SAFE_INTEGER)
    fail(`${name} offset invalid`, `${field}_offset`, offset);
}

/** Feature names for the bits set in a feature word (from the image's table, else QEMU's). */
export function featureNames(h: Qcow2Header, type: 0 | 1 | 2, bits: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    const own = h.featureTable.find((f) => f.type === type && f.bit === bit);
    const std = C.FEATURE_NAMES.find((f) => f.type === type && f.bit === bit);
    out.push(own?.name ?? std?.name ?? `unknown bit ${bit}`);
  }
  return out;
}
