// Corruption scenarios built at test time with qemu-img/qemu-io and damaged at precise bytes
// (reference §6). Shared with the repair tests: each scenario builds one image in `dir` and says
// what QEMU 7.2 reports for it. Images are small (64 MiB virtual, 64 KiB clusters unless stated).
import { join } from 'node:path';
import { truncateSync } from 'node:fs';
import {
  createQcow2,
  patchU16,
  patchU32,
  patchU64,
  qemuImg,
  qemuIo,
  readBytes,
  readU64,
  run,
  writeBytes,
} from '../helpers/qemu.js';

export interface Scenario {
  name: string;
  /** Reference section (§6 scenario number or §2.13 row) this reproduces. */
  ref: string;
  /** Build the image; returns its path. */
  build(dir: string): string;
  /** What QEMU 7.2 says (`qemu-img check` exit code), for documentation and quick assertions. */
  qemuExit: 0 | 1 | 2 | 3;
  /** Our stderr lines are compared with QEMU's line by line (false where QEMU adds driver noise). */
  compareLines?: boolean;
  /** Beyond-QEMU anomaly kinds we must report for this image. */
  extraKinds?: string[];
  /** A clean image of some kind (for the "checks clean" matrix). */
  clean?: boolean;
}

const M64 = 64 * 1024 * 1024;

/**
 * The reference's base image: 64 MiB, 64 KiB clusters, 128 KiB written. Layout: header 0,
 * reftable 0x10000, refblock 0x20000, L1 0x30000, L2 0x40000, data 0x50000 and 0x60000.
 */
export function baseImage(
  dir: string,
  name = 'base.qcow2',
  options: Record<string, string | number | boolean> = {},
): string {
  const f = join(dir, name);
  createQcow2(f, M64, options);
  qemuIo(f, ['write -P 0x11 0 128k']);
  return f;
}

const REFBLOCK = 0x20000;
const L1 = 0x30000;
const L2 = 0x40000;

function patched(
  name: string,
  ref: string,
  qemuExit: Scenario['qemuExit'],
  patch: (f: string) => void,
  extra: Partial<Scenario> = {},
): Scenario {
  return {
    name,
    ref,
    qemuExit,
    compareLines: true,
    ...extra,
    build(dir) {
      const f = baseImage(dir, `${name}.qcow2`);
      patch(f);
      return f;
    },
  };
}

function cleanImage(
  name: string,
  size: number | string,
  options: Record<string, string | number | boolean>,
  cmds: string[],
  after?: (f: string, dir: string) => void,
): Scenario {
  return {
    name,
    ref: 'clean matrix',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const f = join(dir, `${name}.qcow2`);
      createQcow2(f, size, options);
      if (cmds.length) qemuIo(f, cmds);
      after?.(f, dir);
      return f;
    },
  };
}

/** Snapshot layout after `snapshotImage`: snapshot L1 at 0x70000, table at 0x80000, new active L2 at 0x90000. */
export function snapshotImage(dir: string, name: string): string {
  const f = baseImage(dir, `${name}.qcow2`);
  qemuImg('snapshot', '-c', 'snap1', f);
  qemuIo(f, ['write -P 0x22 0 64k']);
  return f;
}

function snapshotsOffset(f: string): number {
  return Number(readU64(f, 64));
}

export const SCENARIOS: Scenario[] = [
  // ---- clean images of many kinds ----
  cleanImage('clean-empty', M64, {}, []),
  cleanImage('clean-base', M64, {}, ['write -P 0x11 0 128k']),
  cleanImage('clean-512b-clusters', '8M', { cluster_size: 512 }, ['write -P 1 0 64k', 'write -P 2 1M 3k']),
  cleanImage('clean-2m-clusters', '1G', { cluster_size: 2 * 1024 * 1024 }, ['write -P 1 0 64k', 'write -P 2 600M 4k']),
  cleanImage('clean-v2', M64, { compat: '0.10' }, ['write -P 1 0 128k', 'write -z 1M 64k']),
  cleanImage('clean-refcount-bits-1', M64, { refcount_bits: 1 }, ['write -P 1 0 192k']),
  cleanImage('clean-refcount-bits-4', M64, { refcount_bits: 4 }, ['write -P 1 0 192k']),
  cleanImage('clean-refcount-bits-64', M64, { refcount_bits: 64 }, ['write -P 1 0 192k']),
  cleanImage('clean-extended-l2', M64, { extended_l2: true }, [
    'write -P 1 0 4k',
    'write -P 2 100k 8k',
    'write -z 1M 64k',
  ]),
  cleanImage('clean-compressed', M64, {}, ['write -c -P 0x22 0 64k', 'write -c -P 0x23 64k 64k', 'write -P 1 1M 64k']),
  cleanImage('clean-compressed-zstd', M64, { compression_type: 'zstd' }, [
    'write -c -P 0x22 0 64k',
    'write -P 1 1M 64k',
  ]),
  cleanImage('clean-zero-clusters', M64, {}, ['write -P 1 0 128k', 'write -z 0 64k', 'write -z 2M 64k']),
  cleanImage('clean-prealloc-metadata', '32M', { preallocation: 'metadata' }, []),
  cleanImage('clean-lazy-refcounts', M64, { lazy_refcounts: true }, ['write -P 1 0 64k']),
  {
    name: 'clean-snapshots',
    ref: 'clean matrix',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const f = snapshotImage(dir, 'clean-snapshots');
      qemuImg('snapshot', '-c', 'snap2', f);
      qemuIo(f, ['write -P 0x33 64k 64k', 'write -P 0x34 10M 64k']);
      return f;
    },
  },
  {
    name: 'clean-bitmaps',
    ref: 'clean matrix',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const f = join(dir, 'clean-bitmaps.qcow2');
      createQcow2(f, M64);
      qemuImg('bitmap', '--add', f, 'b0');
      qemuImg('bitmap', '--add', '-g', '512k', f, 'b1');
      qemuIo(f, ['write -P 1 0 64k', 'write -P 2 32M 64k']);
      return f;
    },
  },
  {
    name: 'clean-backing',
    ref: 'clean matrix',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const b = baseImage(dir, 'backing-base.qcow2');
      const f = join(dir, 'clean-backing.qcow2');
      createQcow2(f, M64, {}, { file: b, format: 'qcow2' });
      qemuIo(f, ['write -P 5 64k 4k']);
      return f;
    },
  },
  {
    name: 'clean-external-data',
    ref: 'clean matrix',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const f = join(dir, 'clean-external-data.qcow2');
      createQcow2(f, M64, { data_file: join(dir, 'clean-external-data.raw') });
      qemuIo(f, ['write -P 1 0 64k', 'write -P 2 5M 64k']);
      return f;
    },
  },

  // ---- D. reference-count value errors ----
  patched('leak', 'S23', 3, (f) => patchU64(f, L2 + 8, 0)),
  patched('refcount-too-high', 'S24', 2, (f) => patchU16(f, REFBLOCK + 5 * 2, 2)),
  patched('cross-link-data', 'S25', 2, (f) => patchU64(f, L2 + 8, 0x8000000000050000n)),
  patched('refcount-zero', '§2.13 #3', 2, (f) => patchU16(f, REFBLOCK + 5 * 2, 0)),
  patched('copied-clear-l2', 'S26', 2, (f) => patchU64(f, L2, 0x50000)),
  patched('copied-clear-l1', 'S26', 2, (f) => patchU64(f, L1, 0x40000)),
  patched('copied-set-shared', '§2.11', 2, (f) => {
    patchU16(f, REFBLOCK + 6 * 2, 2);
  }),
  {
    name: 'cross-link-l2-tables',
    ref: 'S25',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'cross-link-l2-tables.qcow2');
      createQcow2(f, '1G');
      qemuIo(f, ['write -P 0x11 0 64k']);
      patchU64(f, L1 + 8, 0x8000000000040000n);
      return f;
    },
  },
  {
    name: 'cluster-referenced-300-times',
    ref: 'S25',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = baseImage(dir, 'cluster-referenced-300-times.qcow2');
      const entries = Buffer.alloc(300 * 8);
      for (let i = 0; i < 300; i++) entries.writeBigUInt64BE(0x8000000000050000n, 8 * i);
      writeBytes(f, L2, entries);
      return f;
    },
  },
  {
    name: 'cross-link-refcount-bits-32',
    ref: 'S25',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = baseImage(dir, 'cross-link-refcount-bits-32.qcow2', { refcount_bits: 32 });
      const entries = Buffer.alloc(260 * 8);
      for (let i = 0; i < 260; i++) entries.writeBigUInt64BE(0x8000000000060000n, 8 * i);
      writeBytes(f, L2, entries);
      return f;
    },
  },
  {
    name: 'refcount-overflow-bits-1',
    ref: 'S27',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = baseImage(dir, 'refcount-overflow-bits-1.qcow2', { refcount_bits: 1 });
      patchU64(f, L2 + 8, 0x8000000000050000n);
      return f;
    },
  },
  {
    name: 'leak-refcount-bits-1',
    ref: 'S23',
    qemuExit: 3,
    compareLines: true,
    build(dir) {
      const f = baseImage(dir, 'leak-refcount-bits-1.qcow2', { refcount_bits: 1 });
      patchU64(f, L2 + 8, 0);
      return f;
    },
  },
  {
    name: 'leak-refcount-bits-64',
    ref: 'S23',
    qemuExit: 3,
    compareLines: true,
    build(dir) {
      const f = baseImage(dir, 'leak-refcount-bits-64.qcow2', { refcount_bits: 64 });
      patchU64(f, L2 + 8, 0);
      return f;
    },
  },

  // ---- E. bad entries and offsets ----
  patched('l1-reserved-bits', 'S29', 2, (f) => patchU64(f, L1, 0x8000000000040001n)),
  patched('l2-reserved-bits-low', 'S29', 2, (f) => patchU64(f, L2, 0x8000000000050002n)),
  patched('l2-reserved-bits-high', 'S29', 2, (f) => patchU64(f, L2, 0x8100000000050000n)),
  patched('l2-table-unaligned', 'S8', 2, (f) => patchU64(f, L1, 0x8000000000042a00n)),
  patched('data-unaligned', 'S9', 2, (f) => patchU64(f, L2, 0x8000000000050200n)),
  patched('prealloc-zero-unaligned', 'S10', 2, (f) => patchU64(f, L2, 0x8000000000050201n)),
  patched('data-beyond-eof', 'S30', 2, (f) => patchU64(f, L2 + 8, 0x8000000001000000n)),
  patched('l2-beyond-eof', 'S30', 2, (f) => patchU64(f, L1, 0x8000000010000000n)),
  patched('data-at-32pb', 'S30', 2, (f) => patchU64(f, L2 + 8, 0x8080000000000000n)),
  {
    name: 'l1-entry-points-at-header',
    ref: '§2.7',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'l1-entry-points-at-header.qcow2');
      createQcow2(f, '1G');
      qemuIo(f, ['write -P 0x11 0 64k']);
      patchU64(f, L1 + 8, 0x8000000000000000n);
      return f;
    },
  },
  patched('l1-table-beyond-eof', '§2.7', 2, (f) => patchU64(f, 40, 0x1000000)),

  // ---- B. metadata pointing at the wrong place ----
  patched('l2-points-into-l1', 'S5', 2, (f) => patchU64(f, L1, 0x8000000000030000n)),
  patched('data-points-into-refblock', 'S6', 2, (f) => patchU64(f, L2, 0x8000000000020000n)),
  patched('data-points-into-reftable', 'S6', 2, (f) => patchU64(f, L2, 0x8000000000010000n)),
  patched('header-unrefcounted', 'S12', 2, (f) => patchU16(f, REFBLOCK, 0)),
  {
    name: 'data-points-into-snapshot-l2',
    ref: 'S7',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'data-points-into-snapshot-l2');
      // The active L2 (0x90000) entry 0 now points at the snapshot's L2 table (cluster 4).
      patchU64(f, 0x90000, 0x8000000000040000n);
      return f;
    },
  },

  // ---- C. refcount-structure damage ----
  patched('reftable-entry-zeroed', 'S13a', 2, (f) => patchU64(f, 0x10000, 0)),
  patched('refblock-zeroed', 'S13b', 2, (f) => writeBytes(f, REFBLOCK, new Uint8Array(64))),
  patched('no-reftable', 'S15', 2, (f) => {
    patchU64(f, 48, 0);
    patchU32(f, 56, 0);
  }),
  patched('refblock-beyond-eof', 'S17', 2, (f) => patchU64(f, 0x10008, 0x100000)),
  patched('refblock-offset-overflow', 'S19', 2, (f) => patchU64(f, 0x10008, 0xffffffffffff0000n)),
  patched('reftable-reserved-bits', 'S21', 2, (f) => patchU64(f, 0x10000, 0x20001)),
  patched('refblock-unaligned', 'S11', 1, (f) => patchU64(f, 0x10000, 0x20200)),
  patched('refblock-also-data', 'S22', 2, (f) => {
    patchU64(f, L2 + 8, 0x8000000000020000n);
  }),
  {
    name: 'reference-past-eof-within-cluster',
    ref: 'S30',
    qemuExit: 0,
    compareLines: true,
    build(dir) {
      // The last data cluster is cut short: the reference overruns EOF by less than a cluster.
      const f = baseImage(dir, 'reference-past-eof-within-cluster.qcow2');
      truncateSync(f, 0x68000);
      return f;
    },
  },
  {
    name: 'refcounts-beyond-eof',
    ref: 'S28',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['refcount-beyond-eof'],
    build(dir) {
      const f = baseImage(dir, 'refcounts-beyond-eof.qcow2');
      patchU16(f, REFBLOCK + 40 * 2, 1);
      return f;
    },
  },

  // ---- compressed clusters ----
  {
    name: 'compressed-copied-flag',
    ref: 'S31',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'compressed-copied-flag.qcow2');
      createQcow2(f, M64);
      qemuIo(f, ['write -c -P 0x22 0 64k']);
      const e = readU64(f, L2);
      patchU64(f, L2, e | 0x8000000000000000n);
      return f;
    },
  },
  {
    name: 'compressed-beyond-eof',
    ref: 'S31',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'compressed-beyond-eof.qcow2');
      createQcow2(f, M64);
      qemuIo(f, ['write -c -P 0x22 0 64k', 'write -c -P 0x23 64k 64k']);
      const e = readU64(f, L2 + 8);
      // Same offset, the largest sector count: the extent now runs far past end of file.
      patchU64(f, L2 + 8, (e & ~(0xffn << 54n)) | (0xffn << 54n));
      return f;
    },
  },
  {
    name: 'compressed-undecodable',
    ref: '§2.14 #8',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['compressed-undecodable'],
    build(dir) {
      const f = join(dir, 'compressed-undecodable.qcow2');
      createQcow2(f, M64);
      qemuIo(f, ['write -c -P 0x22 0 64k']);
      const e = readU64(f, L2);
      writeBytes(f, Number(e & ((1n << 54n) - 1n)), Buffer.alloc(64, 0xff));
      return f;
    },
  },
  {
    name: 'compressed-shared-cluster',
    ref: '§1.7',
    qemuExit: 0,
    compareLines: true,
    clean: true,
    build(dir) {
      const f = join(dir, 'compressed-shared-cluster.qcow2');
      createQcow2(f, M64);
      qemuIo(f, ['write -c -P 0 0 64k', 'write -c -P 0 64k 64k', 'write -c -P 0 128k 64k']);
      return f;
    },
  },

  // ---- H. extended L2 ----
  {
    name: 'ext-l2-alloc-and-zero',
    ref: 'S43',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'ext-l2-alloc-and-zero.qcow2');
      createQcow2(f, M64, { extended_l2: true });
      qemuIo(f, ['write -P 1 0 4k']);
      patchU64(f, L2 + 8, 0x0000000100000001n);
      return f;
    },
  },
  {
    name: 'ext-l2-unallocated-with-alloc-bits',
    ref: 'S43',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'ext-l2-unallocated-with-alloc-bits.qcow2');
      createQcow2(f, M64, { extended_l2: true });
      qemuIo(f, ['write -P 1 0 4k']);
      patchU64(f, L2 + 16 + 8, 0x3n);
      return f;
    },
  },
  {
    name: 'ext-l2-compressed-with-bitmap',
    ref: 'S43',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'ext-l2-compressed-with-bitmap.qcow2');
      createQcow2(f, M64, { extended_l2: true });
      qemuIo(f, ['write -c -P 1 0 64k']);
      patchU64(f, L2 + 8, 0x1n);
      return f;
    },
  },
  {
    name: 'ext-l2-prealloc-unaligned',
    ref: 'S10',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'ext-l2-prealloc-unaligned.qcow2');
      createQcow2(f, M64, { extended_l2: true });
      qemuIo(f, ['write -P 1 0 64k']);
      patchU64(f, L2, 0x8000000000050200n);
      patchU64(f, L2 + 8, 0xffffffff00000000n);
      return f;
    },
  },

  // ---- F. snapshots ----
  {
    name: 'snapshot-l1-unaligned',
    ref: 'S33',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-l1-unaligned');
      patchU64(f, snapshotsOffset(f), 0x70200);
      return f;
    },
  },
  {
    name: 'snapshot-l1-too-large',
    ref: 'S33',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-l1-too-large');
      patchU32(f, snapshotsOffset(f) + 8, 0x10000000);
      return f;
    },
  },
  {
    name: 'snapshot-entry-incomplete',
    ref: 'S34',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-entry-incomplete');
      const so = snapshotsOffset(f);
      // extra_data_size 24 → 8: keep the entry's bytes, move id and name up by 16.
      const entry = readBytes(f, so, 80);
      const fixed = Buffer.from(entry.subarray(0, 40));
      fixed.writeUInt32BE(8, 36);
      const out = Buffer.concat([fixed, entry.subarray(40, 48), entry.subarray(64, 70), Buffer.alloc(16)]);
      writeBytes(f, so, out);
      return f;
    },
  },
  {
    name: 'snapshot-extra-data-too-large',
    ref: 'S35',
    qemuExit: 1,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-extra-data-too-large');
      patchU32(f, snapshotsOffset(f) + 36, 2048);
      return f;
    },
  },
  {
    name: 'snapshot-count-too-large',
    ref: 'S37',
    qemuExit: 1,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-count-too-large');
      patchU32(f, 60, 131072);
      return f;
    },
  },
  {
    name: 'snapshot-offset-unaligned',
    ref: 'S38',
    qemuExit: 1,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-offset-unaligned');
      patchU64(f, 64, 0x80200);
      return f;
    },
  },
  {
    name: 'snapshot-table-beyond-eof',
    ref: '§2.6',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-table-beyond-eof');
      patchU64(f, 64, 0x4000000);
      return f;
    },
  },
  {
    name: 'snapshot-disk-size-differs',
    ref: '§2.14 #8',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['snapshot-disk-size'],
    build(dir) {
      const f = snapshotImage(dir, 'snapshot-disk-size-differs');
      patchU64(f, snapshotsOffset(f) + 48, 32 * 1024 * 1024);
      return f;
    },
  },

  // ---- external data file ----
  {
    name: 'external-data-compressed',
    ref: 'S45',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'external-data-compressed.qcow2');
      createQcow2(f, M64, { data_file: join(dir, 'external-data-compressed.raw') });
      qemuIo(f, ['write -P 1 0 64k']);
      patchU64(f, L2 + 8, 0x4000000000050000n);
      return f;
    },
  },
  {
    name: 'external-data-identity-mismatch',
    ref: 'S45',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['external-data-mismatch'],
    build(dir) {
      const f = join(dir, 'external-data-identity-mismatch.qcow2');
      createQcow2(f, M64, { data_file: join(dir, 'external-data-identity-mismatch.raw') });
      qemuIo(f, ['write -P 1 0 64k']);
      patchU64(f, L2, 0x8000000000200000n);
      return f;
    },
  },
  {
    name: 'external-data-with-snapshot',
    ref: 'S39',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'external-data-with-snapshot.qcow2');
      createQcow2(f, M64, { data_file: join(dir, 'external-data-with-snapshot.raw') });
      qemuIo(f, ['write -P 1 0 64k']);
      // A hand-made snapshot entry (empty L1) in a new cluster at the end of the file.
      const end = 0x50000;
      truncateSync(f, end + 0x10000);
      const e = Buffer.alloc(64);
      e.writeUInt16BE(1, 12);
      e.writeUInt16BE(1, 14);
      e.writeUInt32BE(16, 36);
      e.writeBigUInt64BE(BigInt(M64), 48);
      e.write('1', 56);
      e.write('s', 57);
      writeBytes(f, end, e);
      patchU32(f, 60, 1);
      patchU64(f, 64, end);
      return f;
    },
  },

  // ---- dirty / corrupt bits, lazy refcounts ----
  {
    name: 'lazy-refcounts-crash',
    ref: 'S2',
    qemuExit: 2,
    compareLines: true,
    build(dir) {
      const f = join(dir, 'lazy-refcounts-crash.qcow2');
      createQcow2(f, M64, { lazy_refcounts: true });
      run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 512', '-c', 'write -P 0x5b 1M 64k', '-c', 'sigraise 9', f]);
      return f;
    },
    extraKinds: ['dirty-bit'],
  },
  patched('dirty-bit-alone', 'S42', 0, (f) => patchU64(f, 72, 1), { extraKinds: ['dirty-bit'] }),
  patched('corrupt-bit-alone', 'S42', 0, (f) => patchU64(f, 72, 2), { extraKinds: ['corrupt-bit'] }),

  // ---- bitmaps ----
  {
    name: 'bitmaps-autoclear-cleared',
    ref: 'S44',
    qemuExit: 3,
    compareLines: false,
    extraKinds: ['bitmaps-inconsistent'],
    build(dir) {
      const f = join(dir, 'bitmaps-autoclear-cleared.qcow2');
      createQcow2(f, M64);
      qemuImg('bitmap', '--add', f, 'b0');
      qemuIo(f, ['write -P 1 0 64k']);
      patchU64(f, 88, 0);
      return f;
    },
  },
  {
    name: 'bitmap-tail-bits-set',
    ref: '§2.14 #8',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['bitmap-tail-bits'],
    build(dir) {
      // 1 MiB disk, 512 B granularity: 2048 bits = 256 bytes of the bitmap's only data cluster are used.
      const f = join(dir, 'bitmap-tail-bits-set.qcow2');
      createQcow2(f, '1M');
      qemuImg('bitmap', '--add', '-g', '512', f, 'b0');
      qemuIo(f, ['write -P 1 0 64k']);
      const ext = bitmapsExt(f);
      const tableOffset = Number(readU64(f, ext.dirOffset));
      const data = Number(readU64(f, tableOffset) & 0x00fffffffffffe00n);
      if (data === 0) throw new Error('bitmap has no data cluster');
      writeBytes(f, data + 256, Uint8Array.of(0x80));
      return f;
    },
  },
  {
    name: 'bitmap-table-entry-invalid-in-use',
    ref: 'S44',
    qemuExit: 1,
    compareLines: false,
    build(dir) {
      const f = join(dir, 'bitmap-table-entry-invalid-in-use.qcow2');
      createQcow2(f, M64);
      qemuImg('bitmap', '--add', f, 'b0');
      qemuIo(f, ['write -P 1 0 64k']);
      const ext = bitmapsExt(f);
      const tableOffset = Number(readU64(f, ext.dirOffset));
      patchU64(f, tableOffset, 0x50001n);
      patchU32(f, ext.dirOffset + 12, readBytes(f, ext.dirOffset + 12, 4).readUInt32BE() | 1);
      return f;
    },
  },
  {
    name: 'bitmap-directory-type-invalid',
    ref: 'S44',
    qemuExit: 1,
    compareLines: false,
    build(dir) {
      const f = join(dir, 'bitmap-directory-type-invalid.qcow2');
      createQcow2(f, M64);
      qemuImg('bitmap', '--add', f, 'b0');
      const ext = bitmapsExt(f);
      writeBytes(f, ext.dirOffset + 16, Uint8Array.of(2));
      return f;
    },
  },

  // ---- v2 specifics (beyond QEMU) ----
  {
    name: 'v2-zero-flag',
    ref: 'S46',
    qemuExit: 0,
    compareLines: true,
    extraKinds: ['v2-zero-flag'],
    build(dir) {
      const f = baseImage(dir, 'v2-zero-flag.qcow2', { compat: '0.10' });
      patchU64(f, L2 + 8, 0x8000000000060001n);
      return f;
    },
  },
  {
    name: 'metadata-overlap-l2-on-refblock',
    ref: '§2.9',
    qemuExit: 2,
    compareLines: true,
    extraKinds: ['metadata-overlap'],
    build(dir) {
      const f = join(dir, 'metadata-overlap-l2-on-refblock.qcow2');
      createQcow2(f, '1G');
      qemuIo(f, ['write -P 0x11 0 64k']);
      patchU64(f, L1 + 8, 0x8000000000020000n);
      return f;
    },
  },
];

/** Offset and size of the bitmap directory from the bitmaps header extension. */
export function bitmapsExt(f: string): { dirOffset: number; dirSize: number } {
  const h = readBytes(f, 0, 4096);
  let off = h.readUInt32BE(100);
  while (off + 8 <= h.length) {
    const type = h.readUInt32BE(off);
    const len = h.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === 0x23852875)
      return { dirOffset: Number(h.readBigUInt64BE(off + 8 + 16)), dirSize: Number(h.readBigUInt64BE(off + 8 + 8)) };
    off += 8 + Math.ceil(len / 8) * 8;
  }
  throw new Error(`${f}: no bitmaps extension`);
}
