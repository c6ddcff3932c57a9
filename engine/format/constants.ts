// Every constant of the qcow2 format lives here (spec: docs/interop/qcow2.txt; QEMU: block/qcow2.h).
// Nothing else in the engine spells a magic number of the format.

export const QCOW2_MAGIC = 0x514649fb;

/** Header sizes. v2 headers are exactly 72 bytes; v3 at least 104, QEMU writes 112. */
export const HEADER_V2_LENGTH = 72;
export const HEADER_V3_MIN_LENGTH = 104;
export const HEADER_V3_QEMU_LENGTH = 112;

/** Byte offsets of header fields (all big-endian). */
export const HDR = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatibleFeatures: 72,
  compatibleFeatures: 80,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  compressionType: 104,
} as const;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** Extended L2 entries need 32 subclusters of at least 512 bytes. */
export const MIN_EXTENDED_L2_CLUSTER_BITS = 14;
export const SUBCLUSTERS_PER_CLUSTER = 32;

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_KNOWN_MASK = 0x1fn;
/** Compatible feature bits. */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const COMPAT_KNOWN_MASK = 0x1n;
/** Autoclear feature bits. */
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;
export const AUTOCLEAR_KNOWN_MASK = 0x3n;

/** QEMU's own names for the feature bits (the feature-name table it writes). */
export const FEATURE_NAMES: ReadonlyArray<{ type: 0 | 1 | 2; bit: number; name: string }> = [
  { type: 0, bit: 0, name: 'dirty bit' },
  { type: 0, bit: 1, name: 'corrupt bit' },
  { type: 0, bit: 2, name: 'external data file' },
  { type: 0, bit: 3, name: 'compression type' },
  { type: 0, bit: 4, name: 'extended L2 entries' },
  { type: 1, bit: 0, name: 'lazy refcounts' },
  { type: 2, bit: 0, name: 'bitmaps' },
  { type: 2, bit: 1, name: 'raw external data' },
];

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

/** Header extension types. */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;
export const FEATURE_TABLE_ENTRY_SIZE = 48;
export const BITMAPS_EXT_SIZE = 24;
export const CRYPTO_EXT_SIZE = 16;
/** QEMU: backing format name must be shorter than 16 bytes. */
export const MAX_BACKING_FORMAT_LENGTH = 15;
export const MAX_BACKING_FILE_NAME = 1023;

/**
 * 64-bit entries are handled as two 32-bit halves (hi, lo) on the hot paths, so the masks are
 * split the same way. Bit 63 is hi bit 31.
 */
export const OFLAG_COPIED_HI = 0x80000000; // bit 63
export const OFLAG_COMPRESSED_HI = 0x40000000; // bit 62
export const OFLAG_ZERO_LO = 0x1; // bit 0

/** L1 entry: offset bits 9..55, reserved 0x7f000000000001ff. */
export const L1E_OFFSET_MASK_HI = 0x00ffffff;
export const L1E_OFFSET_MASK_LO = 0xfffffe00;
export const L1E_RESERVED_MASK_HI = 0x7f000000;
export const L1E_RESERVED_MASK_LO = 0x000001ff;
/** L2 standard descriptor: offset bits 9..55, reserved 0x3f000000000001fe. */
export const L2E_OFFSET_MASK_HI = 0x00ffffff;
export const L2E_OFFSET_MASK_LO = 0xfffffe00;
export const L2E_STD_RESERVED_MASK_HI = 0x3f000000;
export const L2E_STD_RESERVED_MASK_LO = 0x000001fe;
/** Refcount table entry: offset bits 9..63, reserved 0x1ff. */
export const REFT_OFFSET_MASK_HI = 0xffffffff;
export const REFT_OFFSET_MASK_LO = 0xfffffe00;
export const REFT_RESERVED_MASK_LO = 0x000001ff;
/** Bitmap table entry: offset bits 9..55, reserved 0xff000000000001fe, bit 0 = all ones. */
export const BME_OFFSET_MASK_HI = 0x00ffffff;
export const BME_OFFSET_MASK_LO = 0xfffffe00;
export const BME_RESERVED_MASK_HI = 0xff000000;
export const BME_RESERVED_MASK_LO = 0x000001fe;
export const BME_ALL_ONES_LO = 0x1;

/** Extended L2 subcluster bitmap halves: low 32 bits = allocated, high 32 bits = zero. */
export const L2_BITMAP_ALL_ALLOC = 0xffffffff;
export const L2_BITMAP_ALL_ZEROES = 0xffffffff;

/** Limits QEMU enforces (block/qcow2.h). */
export const QCOW_MAX_L1_SIZE = 32 * 1024 * 1024; // bytes
export const QCOW_MAX_REFTABLE_SIZE = 8 * 1024 * 1024; // bytes
export const QCOW_MAX_SNAPSHOTS = 65536;
export const QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;
export const QCOW_MAX_SNAPSHOTS_SIZE = 1024 * QCOW_MAX_SNAPSHOTS; // 64 MiB
export const QCOW_MAX_BITMAPS = 65535;
export const QCOW_MAX_BITMAP_DIRECTORY_SIZE = 1024 * QCOW_MAX_BITMAPS;
export const BME_MAX_TABLE_SIZE = 0x8000000;
export const BME_MAX_PHYS_SIZE = 0x20000000; // 512 MiB
export const BME_MAX_GRANULARITY_BITS = 31;
export const BME_MIN_GRANULARITY_BITS = 9;
export const BME_MAX_NAME_SIZE = 1023;
export const BME_FLAG_IN_USE = 1 << 0;
export const BME_FLAG_AUTO = 1 << 1;
export const BME_FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2;
export const BME_TYPE_DIRTY_TRACKING = 1;
export const MAX_REFCOUNT_ORDER = 6;
/** Backing chains deeper than this are refused (QEMU's BDRV backing depth guard is similar). */
export const MAX_BACKING_CHAIN_DEPTH = 16;

/** Snapshot table entry fixed part and extra-data fields. */
export const SNAPSHOT_ENTRY_FIXED_SIZE = 40;
export const SNAPSHOT_EXTRA_V3_MIN = 16;
export const SNAPSHOT_EXTRA_QEMU_SIZE = 24;

/** Bitmap directory entry fixed part. */
export const BITMAP_DIR_ENTRY_FIXED_SIZE = 24;

export const SECTOR_SIZE = 512;
export const L2_ENTRY_SIZE_STD = 8;
export const L2_ENTRY_SIZE_EXT = 16;
export const L1_ENTRY_SIZE = 8;
export const REFTABLE_ENTRY_SIZE = 8;

/** LUKS v1 header inside an encrypted qcow2 (crypt_method 2); QEMU: crypto/block-luks.c. */
export const LUKS_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe] as const; // "LUKS" 0xBA 0xBE
export const LUKS_VERSION = 1;
export const LUKS_HEADER_SIZE = 592;
export const LUKS_KEY_SLOTS = 8;
export const LUKS_KEY_SLOT_SIZE = 48;
export const LUKS_KEY_SLOT_ENABLED = 0x00ac71f3;
export const LUKS_KEY_SLOT_DISABLED = 0x0000dead;
export const LUKS_SECTOR_SIZE = 512;
/** Key material starts at least this far into the LUKS area. */
export const LUKS_KEY_SLOT_OFFSET = 4096;
/** Byte offsets of the LUKS header fields (all big-endian). */
export const LUKS = {
  magic: 0,
  version: 6,
  cipherName: 8,
  cipherMode: 40,
  hashSpec: 72,
  payloadOffset: 104,
  keyBytes: 108,
  masterKeyDigest: 112,
  masterKeySalt: 132,
  masterKeyIterations: 164,
  uuid: 168,
  keySlots: 208,
} as const;
export const LUKS_STRING_LEN = 32;
export const LUKS_UUID_LEN = 40;
