/**
 * What each host cluster is (the cluster map's colours) and what each guest cluster reads as (the
 * guest map). Stored one byte per cluster in a Uint8Array; the renderer draws straight from it.
 * Codes are stable: the renderer, reports and tests rely on them. Append only.
 */
export const enum HostRole {
  Free = 0,
  Header = 1,
  L1 = 2,
  L2 = 3,
  RefcountTable = 4,
  RefcountBlock = 5,
  SnapshotTable = 6,
  SnapshotL1 = 7,
  SnapshotL2 = 8,
  BitmapDirectory = 9,
  BitmapTable = 10,
  BitmapData = 11,
  Data = 12,
  Compressed = 13,
  Leaked = 14,
  Corrupt = 15,
  BeyondEof = 16,
  CryptoHeader = 17,
  /** Allocated for a zero cluster (preallocation). */
  ZeroAlloc = 18,
  /** Data reachable only from snapshots. */
  SnapshotData = 19,
}

export const HOST_ROLE_NAMES: Record<number, string> = {
  0: 'free',
  1: 'header',
  2: 'L1 table',
  3: 'L2 table',
  4: 'refcount table',
  5: 'refcount block',
  6: 'snapshot table',
  7: 'snapshot L1 table',
  8: 'snapshot L2 table',
  9: 'bitmap directory',
  10: 'bitmap table',
  11: 'bitmap data',
  12: 'data',
  13: 'compressed data',
  14: 'leaked',
  15: 'corrupt',
  16: 'beyond end of file',
  17: 'encryption header',
  18: 'preallocated zero',
  19: 'snapshot-only data',
};

export const HOST_ROLE_COUNT = 20;

export const enum GuestState {
  Unallocated = 0,
  Zero = 1,
  Data = 2,
  Compressed = 3,
  /** Read from a backing layer (the layer depth is kept separately). */
  Backing = 4,
  /** Some subclusters allocated, others not (extended L2). */
  Partial = 5,
  /** The entry is invalid (reading it fails in QEMU). */
  Invalid = 6,
}

export const GUEST_STATE_NAMES: Record<number, string> = {
  0: 'unallocated',
  1: 'zero',
  2: 'data',
  3: 'compressed',
  4: 'from backing file',
  5: 'partly allocated',
  6: 'invalid',
};
