// The conformance matrix of the read path: small images made at test time by qemu-img/qemu-io,
// each with distinctive patterns at varied offsets. Every builder returns the image to read and
// the snapshots it holds.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { createQcow2, patchU32, qemuImg, qemuIo, readBytes } from '../helpers/qemu.js';

export interface BuiltImage {
  /** The image to open (top of its chain). */
  top: string;
  /** Every file the image depends on (for the unchanged-bytes check). */
  files: string[];
  /** Internal snapshots of the top image: id and name. */
  snapshots: Array<{ id: string; name: string }>;
  /** Format of the top image (default qcow2). */
  format?: 'qcow2' | 'raw';
  /** The top image holds compressed clusters (checked with qemu-img check, so the case is not hollow). */
  compressed?: boolean;
}

export interface MatrixCase {
  name: string;
  build(dir: string): BuiltImage;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Patterns at offsets chosen against a cluster size: cluster-aligned runs, runs straddling
 * clusters, sub-cluster and sub-sector-aligned pieces, a zeroed range, a discarded range and a
 * write near the end of the disk.
 */
function mixedWrites(cs: number, size: number, opts: { zeroes?: boolean; discard?: boolean } = {}): string[] {
  const c = [
    `write -P 0xa1 0 ${cs + cs / 2}`,
    `write -P 0xb2 ${3 * cs + 512} 1536`,
    `write -P 0xc3 ${Math.floor(size / 3 / cs) * cs + 4096} ${Math.max(cs * 3, 64 * KiB)}`,
    `write -P 0xd4 ${size - 2 * cs - 4096} 3000`,
    `write -P 0xe5 ${Math.floor(size / 2 / cs) * cs} ${cs * 4}`,
  ];
  if (opts.zeroes !== false) {
    c.push(`write -z ${Math.floor(size / 2 / cs) * cs + cs} ${cs}`); // zero flag over data (ZERO_ALLOC or unmapped)
    c.push(`write -z ${Math.floor((size * 3) / 4 / cs) * cs} ${2 * cs}`); // zero over unallocated
  }
  if (opts.discard !== false) c.push(`discard ${Math.floor(size / 2 / cs) * cs + 2 * cs} ${cs}`);
  return c;
}

function plain(name: string, cs: number, size: number, options: Record<string, string | number | boolean>): MatrixCase {
  return {
    name,
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, size, { cluster_size: cs, ...options });
      qemuIo(f, mixedWrites(cs, size));
      return { top: f, files: [f], snapshots: [] };
    },
  };
}

function compressed(
  name: string,
  cs: number,
  size: number,
  type: 'zlib' | 'zstd',
  extra: Record<string, string | number | boolean> = {},
): MatrixCase {
  return {
    name,
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, size, { cluster_size: cs, compression_type: type, ...extra });
      const big = Math.max(cs * 4, 256 * KiB);
      qemuIo(f, [
        `write -c -P 0x5a 0 ${big}`, // compressible pattern, whole clusters
        `write -c -P 0x6b ${2 * big} ${cs}`,
        `write -P 0x7c ${cs + 512} 1024`, // partial overwrite: COW of a compressed cluster
        `write -P 0x8d ${4 * big} ${cs * 2}`, // plain data next to compressed
      ]);
      return { top: f, files: [f], snapshots: [], compressed: true };
    },
  };
}

function convertedCompressed(name: string, cs: number, size: number, type: 'zlib' | 'zstd'): MatrixCase {
  return {
    name,
    build(dir) {
      const raw = join(dir, 'src.raw');
      qemuImg('create', '-q', '-f', 'raw', raw, String(size));
      qemuIo(
        raw,
        [
          `write -P 0x31 0 ${cs * 3}`,
          `write -P 0x42 ${cs * 3} 512`,
          `write -P 0x53 ${Math.floor(size / 2 / cs) * cs + 512} ${cs * 2}`,
        ],
        { format: 'raw' },
      );
      const f = join(dir, 'conv.qcow2');
      qemuImg(
        'convert',
        '-q',
        '-c',
        '-f',
        'raw',
        '-O',
        'qcow2',
        '-o',
        `cluster_size=${cs},compression_type=${type}`,
        raw,
        f,
      );
      return { top: f, files: [f], snapshots: [], compressed: true };
    },
  };
}

/**
 * Turn the backing-format header extension into an unknown one (QEMU 7.2 will not write an image
 * without it), so that the backing format must be probed.
 */
export function dropBackingFormat(file: string): void {
  const head = readBytes(file, 0, 4096);
  const len = head.readUInt32BE(100);
  for (let off = len; off + 8 <= head.length; ) {
    const type = head.readUInt32BE(off);
    if (type === 0) break;
    if (type === 0xe2792aca) {
      patchU32(file, off, 0x7e57ab1e);
      return;
    }
    off += 8 + Math.ceil(head.readUInt32BE(off + 4) / 8) * 8;
  }
  throw new Error(`${file}: no backing-format extension`);
}

export const MATRIX: MatrixCase[] = [
  plain('512 B clusters, v3', 512, 2 * MiB, { compat: '1.1' }),
  plain('4 KiB clusters, compat 0.10', 4 * KiB, 4 * MiB, { compat: '0.10' }),
  plain('64 KiB clusters, v3, refcount_bits=1', 64 * KiB, 8 * MiB, { refcount_bits: 1 }),
  plain('64 KiB clusters, v3, refcount_bits=64', 64 * KiB, 8 * MiB, { refcount_bits: 64 }),
  plain('2 MiB clusters, v3', 2 * MiB, 24 * MiB, {}),
  plain('64 KiB clusters, extended_l2', 64 * KiB, 8 * MiB, { extended_l2: true }),
  plain('32 KiB clusters, extended_l2, refcount_bits=16', 32 * KiB, 6 * MiB, { extended_l2: true }),
  plain('64 KiB clusters, unaligned virtual size', 64 * KiB, 5 * MiB + 512, {}),
  plain('16 KiB clusters, extended_l2 (512-byte subclusters), refcount_bits=64', 16 * KiB, 3 * MiB, {
    extended_l2: true,
    refcount_bits: 64,
  }),
  plain('2 MiB clusters, extended_l2', 2 * MiB, 24 * MiB, { extended_l2: true }),
  compressed('zlib compressed, 64 KiB clusters', 64 * KiB, 8 * MiB, 'zlib'),
  compressed('zstd compressed, 64 KiB clusters', 64 * KiB, 8 * MiB, 'zstd'),
  compressed('zlib compressed, 4 KiB clusters', 4 * KiB, 4 * MiB, 'zlib'),
  compressed('zstd compressed, extended_l2', 64 * KiB, 8 * MiB, 'zstd', { extended_l2: true }),
  convertedCompressed('convert -c zlib, 512 B clusters', 512, 1 * MiB, 'zlib'),
  convertedCompressed('convert -c zstd, 2 MiB clusters', 2 * MiB, 16 * MiB, 'zstd'),
  convertedCompressed('convert -c zstd, 512 B clusters', 512, 1 * MiB, 'zstd'),
  {
    name: 'zero clusters: ZERO_ALLOC, ZERO_PLAIN, write -z -u, discard',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, 4 * MiB, {});
      qemuIo(f, [
        'write -P 0x11 0 512k',
        'write -z 0 64k', // stays allocated: ZERO_ALLOC
        'write -z -u 64k 64k', // unmapped: ZERO_PLAIN
        'discard 128k 64k',
        'write -z 1M 192k', // zero over unallocated
        'write -P 0x22 2M 4k',
        'write -z 2M 1k', // partial: data stays, zeros written
      ]);
      return { top: f, files: [f], snapshots: [] };
    },
  },
  {
    name: 'metadata preallocation (zero:true data:true from file holes)',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, 4 * MiB, { preallocation: 'metadata' });
      qemuIo(f, ['write -P 0x44 64k 128k', 'write -P 0x55 1M 4k', 'write -z 2M 64k']);
      return { top: f, files: [f], snapshots: [] };
    },
  },
  ...(['falloc', 'full'] as const).map(
    (mode): MatrixCase => ({
      name: `preallocation=${mode}`,
      build(dir) {
        const f = join(dir, `${mode}.qcow2`);
        createQcow2(f, 2 * MiB, { preallocation: mode, cluster_size: mode === 'falloc' ? 4096 : 65536 });
        qemuIo(f, ['write -P 0x45 64k 4k', 'write -z 128k 8k', 'write -P 0x46 1M 64k']);
        return { top: f, files: [f], snapshots: [] };
      },
    }),
  ),
  {
    name: 'raw image on its own (probed)',
    build(dir) {
      const f = join(dir, 'disk.raw');
      qemuImg('create', '-q', '-f', 'raw', f, String(3 * MiB + 512));
      qemuIo(f, ['write -P 0x47 0 8k', 'write -P 0x48 1M 4k', `write -P 0x49 ${3 * MiB} 512`], { format: 'raw' });
      return { top: f, files: [f], snapshots: [], format: 'raw' };
    },
  },
  {
    name: '3-deep chain: raw base, qcow2 mid, qcow2 top, relative names',
    build(dir) {
      const sub = join(dir, 'layers');
      mkdirSync(sub);
      const base = join(sub, 'base.raw');
      qemuImg('create', '-q', '-f', 'raw', base, String(4 * MiB));
      // The base's first 4 KiB is written with data (qemu-img allocates it; see host-holes.ts).
      qemuIo(base, ['write -P 0x61 0 192k', 'write -P 0x62 1M 8k', 'write -P 0x63 3M 64k'], { format: 'raw' });
      const mid = join(sub, 'mid.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid, String(4 * MiB));
      qemuIo(mid, ['write -P 0x71 64k 64k', 'write -z 1M 4k', 'write -P 0x72 2M 96k', 'discard 3M 64k']);
      const top = join(dir, 'top.qcow2');
      qemuImg('create', '-q', '-f', 'qcow2', '-b', 'layers/mid.qcow2', '-F', 'qcow2', top, String(6 * MiB));
      qemuIo(top, [
        'write -P 0x81 128k 4k',
        'write -z 2M 32k',
        'write -P 0x82 5M 64k',
        `write -P 0x83 ${4 * MiB - 512} 1k`,
      ]);
      return { top, files: [base, mid, top], snapshots: [] };
    },
  },
  {
    name: '3-deep chain: qcow2 base (v2, 4 KiB, compressed clusters), qcow2 mid with extended_l2, qcow2 top; smaller base',
    build(dir) {
      const base = join(dir, 'base.qcow2');
      createQcow2(base, 2 * MiB, { compat: '0.10', cluster_size: 4096 });
      qemuIo(base, ['write -P 0x91 0 1M', 'write -P 0x92 1536k 4k', 'write -c -P 0x93 1600k 64k']);
      const mid = join(dir, 'mid.qcow2');
      createQcow2(mid, 3 * MiB, { extended_l2: true }, { file: 'base.qcow2', format: 'qcow2' });
      qemuIo(mid, ['write -P 0xa1 4k 4k', 'write -z 64k 2k', 'write -P 0xa2 2M 4k', 'discard 512k 64k']);
      const top = join(dir, 'top.qcow2');
      createQcow2(top, 4 * MiB, {}, { file: 'mid.qcow2', format: 'qcow2' });
      qemuIo(top, ['write -P 0xb1 8k 512', 'write -P 0xb2 3M 64k', 'write -z 256k 64k']);
      return { top, files: [base, mid, top], snapshots: [] };
    },
  },
  {
    name: 'backing without a format extension (probed)',
    build(dir) {
      const base = join(dir, 'base.qcow2');
      createQcow2(base, 2 * MiB, {});
      qemuIo(base, ['write -P 0x13 0 1M']);
      const top = join(dir, 'top.qcow2');
      createQcow2(top, 2 * MiB, {}, { file: 'base.qcow2', format: 'qcow2' });
      dropBackingFormat(top);
      qemuIo(top, ['write -P 0x14 64k 64k']);
      return { top, files: [base, top], snapshots: [] };
    },
  },
  {
    name: 'internal snapshots',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, 4 * MiB, {});
      qemuIo(f, ['write -P 0x21 0 256k', 'write -P 0x22 1M 64k']);
      qemuImg('snapshot', '-c', 'first', f);
      qemuIo(f, ['write -P 0x23 64k 64k', 'write -z 1M 64k', 'write -P 0x24 3M 4k']);
      qemuImg('snapshot', '-c', 'second', f);
      qemuIo(f, ['discard 0 128k', 'write -P 0x25 2M 128k']);
      return {
        top: f,
        files: [f],
        snapshots: [
          { id: '1', name: 'first' },
          { id: '2', name: 'second' },
        ],
      };
    },
  },
  {
    name: 'internal snapshots of an overlay (unallocated reads from the backing file) with extended_l2',
    build(dir) {
      const base = join(dir, 'base.qcow2');
      createQcow2(base, 4 * MiB, {});
      qemuIo(base, ['write -P 0x26 0 2M']);
      const f = join(dir, 'img.qcow2');
      createQcow2(f, 4 * MiB, { extended_l2: true }, { file: 'base.qcow2', format: 'qcow2' });
      qemuIo(f, ['write -P 0x27 4k 4k', 'write -z 1M 8k']);
      qemuImg('snapshot', '-c', 's1', f);
      qemuIo(f, ['write -P 0x28 0 64k', 'discard 1M 64k', 'write -P 0x29 3M 4k']);
      return { top: f, files: [base, f], snapshots: [{ id: '1', name: 's1' }] };
    },
  },
  {
    name: 'internal snapshots, v2 (compat 0.10)',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      createQcow2(f, 2 * MiB, { compat: '0.10', cluster_size: 4096 });
      qemuIo(f, ['write -P 0x31 0 64k']);
      qemuImg('snapshot', '-c', 'only', f);
      qemuIo(f, ['write -P 0x32 4k 4k', 'discard 32k 8k']);
      return { top: f, files: [f], snapshots: [{ id: '1', name: 'only' }] };
    },
  },
  {
    name: 'external data file',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      const data = join(dir, 'img.data');
      createQcow2(f, 4 * MiB, { data_file: data });
      qemuIo(f, [
        'write -P 0x41 0 192k',
        'write -P 0x42 1M 4k',
        'write -z 64k 64k',
        'discard 128k 64k',
        'write -P 0x43 3M 64k',
      ]);
      return { top: f, files: [f, data], snapshots: [] };
    },
  },
  {
    name: 'external data file, data_file_raw, extended_l2',
    build(dir) {
      const f = join(dir, 'img.qcow2');
      const data = join(dir, 'img.data');
      createQcow2(f, 4 * MiB, { data_file: data, data_file_raw: true, extended_l2: true });
      qemuIo(f, ['write -P 0x51 4k 8k', 'write -P 0x52 1M 64k', 'write -z 1M 2k']);
      return { top: f, files: [f, data], snapshots: [] };
    },
  },
];
