// The lab's workloads: small images, sequences of guest operations that exercise every path of
// the writer (allocation, overwrite, COW, discard, zero, compressed, L1 growth, new refcount blocks,
// refcount-table growth, snapshots, lazy refcounts), with guest flushes in between.
import type { CreateOptions } from '../write/create.js';

export type LabOp =
  | { op: 'write'; offset: number; length: number }
  | { op: 'zero'; offset: number; length: number }
  | { op: 'discard'; offset: number; length: number }
  | { op: 'compressed'; offset: number }
  | { op: 'flush' }
  | { op: 'resize'; size: number }
  | { op: 'snapshot-create'; name: string }
  | { op: 'snapshot-delete'; name: string }
  | { op: 'snapshot-revert'; name: string };

export interface Workload {
  name: string;
  create: CreateOptions;
  /** Run before recording starts: builds the base image the crash states start from. */
  setup: LabOp[];
  /** The recorded operations. */
  ops: LabOp[];
  /** Open the image with lazy refcounts. */
  lazyRefcounts?: boolean;
  /** Tables kept per cache (small values force evictions in the middle of operations). */
  cacheTables?: number;
}

const K = 1024;
const M = 1024 * 1024;

const w = (offset: number, length: number): LabOp => ({ op: 'write', offset, length });
const flush: LabOp = { op: 'flush' };

/** Sequential runs of writes: `count` writes of `len` bytes every `stride` bytes from `start`. */
function writes(start: number, count: number, len: number, stride: number, flushEvery = 0): LabOp[] {
  const out: LabOp[] = [];
  for (let i = 0; i < count; i++) {
    out.push(w(start + i * stride, len));
    if (flushEvery && (i + 1) % flushEvery === 0) out.push(flush);
  }
  return out;
}

export function labWorkloads(): Workload[] {
  return [
    {
      name: 'allocate',
      create: { size: 2 * M, clusterBits: 12 },
      setup: [],
      ops: [
        ...writes(0, 6, 4 * K, 4 * K, 3), // aligned whole clusters
        w(40 * K + 512, 3 * K), // partial cluster: COW from nothing
        w(1 * M + 100, 9 * K), // unaligned, spans three clusters, second L2 region
        flush,
        ...writes(512 * K, 4, 2 * K, 12 * K, 2),
        w(1536 * K, 4 * K), // needs a new L2 table
      ],
    },
    {
      name: 'overwrite',
      create: { size: 1 * M, clusterBits: 12 },
      setup: [...writes(0, 16, 4 * K, 4 * K), flush],
      ops: [
        w(0, 4 * K), // in place
        w(5 * K + 512, 1 * K), // in place, partial
        flush,
        w(8 * K - 512, 1 * K), // straddles two clusters, in place
        w(64 * K, 4 * K),
        w(64 * K + 512, 512), // allocate, then overwrite before any flush
        flush,
        w(2 * K, 8 * K),
      ],
    },
    {
      name: 'discard',
      create: { size: 1 * M, clusterBits: 12 },
      setup: [...writes(0, 16, 4 * K, 4 * K), flush],
      ops: [
        { op: 'discard', offset: 0, length: 16 * K },
        w(128 * K, 4 * K), // may not reuse the discarded clusters yet
        flush,
        w(132 * K, 8 * K), // may reuse them now
        { op: 'discard', offset: 32 * K, length: 8 * K },
        { op: 'discard', offset: 130 * K, length: 8 * K }, // partial clusters are left alone
        w(200 * K, 4 * K),
        flush,
        { op: 'discard', offset: 40 * K, length: 24 * K },
        w(300 * K, 12 * K),
      ],
    },
    {
      name: 'zero',
      create: { size: 1 * M, clusterBits: 12 },
      setup: [...writes(0, 12, 4 * K, 4 * K), flush],
      ops: [
        { op: 'zero', offset: 0, length: 8 * K },
        { op: 'zero', offset: 9 * K, length: 1 * K }, // partial: written as zeros
        w(100 * K, 4 * K),
        flush,
        { op: 'zero', offset: 12 * K, length: 20 * K },
        w(0, 2 * K), // into a zero cluster: allocates
        { op: 'zero', offset: 200 * K, length: 8 * K }, // never written
      ],
    },
    {
      name: 'compressed',
      create: { size: 1 * M, clusterBits: 12 },
      setup: [...writes(0, 4, 4 * K, 4 * K), flush],
      ops: [
        { op: 'compressed', offset: 64 * K },
        { op: 'compressed', offset: 68 * K }, // packed into the same host cluster
        { op: 'compressed', offset: 0 }, // replaces a normal cluster
        flush,
        w(64 * K + 1 * K, 1 * K), // COW out of a compressed cluster
        { op: 'discard', offset: 68 * K, length: 4 * K },
        { op: 'compressed', offset: 72 * K },
        flush,
        { op: 'compressed', offset: 64 * K },
        w(4 * K, 4 * K),
      ],
    },
    {
      name: 'grow-l1',
      create: { size: 64 * K, clusterBits: 9 },
      setup: [w(0, 2 * K), flush],
      ops: [
        { op: 'resize', size: 256 * K },
        w(200 * K, 1 * K),
        flush,
        { op: 'resize', size: 2 * M }, // L1 beyond one cluster
        w(2 * M - 1536, 1 * K),
        w(1 * M, 512),
      ],
    },
    {
      name: 'refblocks',
      // 64-bit refcounts in 512-byte clusters: one refcount block covers 64 clusters.
      create: { size: 1 * M, clusterBits: 9, refcountOrder: 6 },
      setup: [],
      ops: [...writes(0, 10, 8 * K, 8 * K, 4), w(600 * K, 20 * K)],
    },
    {
      name: 'grow-reftable',
      // One reftable cluster (64 entries) × 64 clusters per block = 4096 clusters = 2 MiB of file.
      create: { size: 4 * M, clusterBits: 9, refcountOrder: 6 },
      setup: [w(0, 1920 * K), flush],
      ops: [w(1920 * K, 32 * K), flush, w(1952 * K, 64 * K), w(3 * M, 16 * K)],
    },
    {
      name: 'cache-eviction',
      // Four tables per cache and 512-byte clusters (32 KiB of guest per L2 table): L2 tables and
      // refcount blocks are evicted, i.e. written back, in the middle of operations.
      create: { size: 1 * M, clusterBits: 9, refcountOrder: 6 },
      cacheTables: 4,
      setup: [...writes(0, 8, 1 * K, 64 * K), flush],
      ops: [
        ...writes(16 * K, 12, 1 * K, 40 * K, 5),
        { op: 'discard', offset: 0, length: 1 * K },
        w(700 * K, 3 * K),
        flush,
        ...writes(4 * K, 6, 512, 96 * K),
      ],
    },
    {
      name: 'snapshots',
      create: { size: 1 * M, clusterBits: 12 },
      setup: [...writes(0, 6, 4 * K, 4 * K), { op: 'compressed', offset: 64 * K }, flush],
      ops: [
        { op: 'snapshot-create', name: 'a' },
        w(0, 4 * K), // COW of a shared cluster (and of its shared L2 table)
        w(6 * K, 1 * K),
        { op: 'snapshot-create', name: 'b' },
        w(2 * K, 4 * K),
        flush,
        { op: 'snapshot-delete', name: 'a' },
        w(64 * K + 512, 512),
        { op: 'snapshot-revert', name: 'b' },
        w(12 * K, 4 * K),
        { op: 'snapshot-delete', name: 'b' },
      ],
    },
    {
      name: 'lazy-refcounts',
      create: { size: 1 * M, clusterBits: 12, lazyRefcounts: true },
      lazyRefcounts: true,
      setup: [w(0, 8 * K), flush],
      ops: [
        w(16 * K, 8 * K),
        w(1 * K, 1 * K),
        flush,
        { op: 'discard', offset: 0, length: 4 * K },
        w(64 * K, 12 * K),
        flush,
        w(512 * K, 4 * K),
      ],
    },
  ];
}

/**
 * Deterministic guest bytes for operation `opId` at guest offset `offset`: each sector is tagged
 * with the operation and its own position, so stale or misplaced data never matches by accident,
 * yet the contents compress well.
 */
export function patternBytes(opId: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const p = offset + i;
    const sector = Math.floor(p / 512);
    const inS = p % 512;
    out[i] =
      inS < 4
        ? (sector >>> (8 * inS)) & 0xff
        : inS < 6
          ? (opId >>> (8 * (inS - 4))) & 0xff
          : (opId * 29 + sector * 7 + 1) & 0xff;
  }
  return out;
}
