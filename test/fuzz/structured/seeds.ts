// Valid images made by qemu-img/qemu-io, the starting points of structure-aware fuzzing: several
// cluster sizes, internal snapshots, persistent bitmaps, zlib and zstd compressed clusters, zero
// clusters, extended L2 with subclusters, both header versions. Small, so a case costs milliseconds.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo } from '../../helpers/qemu.js';
import { type Layout, layoutOf } from './layout.js';

export interface Seed {
  name: string;
  bytes: Uint8Array;
  layout: Layout;
}

const RECIPES: Array<{ name: string; make: (p: string) => void }> = [
  {
    name: 'c512-zstd-refcount64',
    make: (p) => {
      createQcow2(p, '1M', { cluster_size: 512, compression_type: 'zstd', refcount_bits: 64 });
      qemuIo(p, ['write -c -P 5 0 4k', 'write -P 6 8k 2k', 'write -z 16k 1k']);
    },
  },
  {
    name: 'c4k-snapshots-refcount2',
    make: (p) => {
      createQcow2(p, '2M', { cluster_size: '4k', refcount_bits: 2 });
      qemuIo(p, ['write -P 1 0 32k']);
      qemuImg('snapshot', '-c', 's1', p);
      qemuIo(p, ['write -P 2 8k 16k']);
      qemuImg('snapshot', '-c', 's2', p);
      qemuIo(p, ['write -z 0 4k']);
    },
  },
  {
    name: 'c64k-zlib-compressed',
    make: (p) => {
      createQcow2(p, '4M', {});
      qemuIo(p, ['write -P 1 0 64k', 'write -z 128k 64k', 'write -c -P 2 256k 128k', 'write -P 3 3M 4k']);
    },
  },
  {
    name: 'c16k-extended-l2',
    make: (p) => {
      createQcow2(p, '2M', { extended_l2: true, cluster_size: '16k' });
      qemuIo(p, ['write -P 1 2k 2k', 'write -z 64k 16k', 'write -P 4 100k 9k', 'write -c -P 7 512k 16k']);
    },
  },
  {
    name: 'c4k-bitmaps',
    make: (p) => {
      createQcow2(p, '4M', { cluster_size: '4k' });
      qemuImg('bitmap', '--add', p, 'b0');
      qemuImg('bitmap', '--add', '-g', '8k', p, 'b1');
      qemuIo(p, ['write -P 7 0 256k', 'write -P 8 1M 64k']);
    },
  },
  {
    name: 'c256k-v2-snapshot',
    make: (p) => {
      createQcow2(p, '4M', { compat: '0.10', cluster_size: '256k' });
      qemuIo(p, ['write -P 1 0 64k', 'write -c -P 9 1M 256k']);
      qemuImg('snapshot', '-c', 'one', p);
      qemuIo(p, ['write -P 2 32k 64k']);
    },
  },
];

/** Make every seed image under `dir` (qemu-img must be installed). */
export function makeSeeds(dir: string): Seed[] {
  mkdirSync(dir, { recursive: true });
  return RECIPES.map((r) => {
    const p = join(dir, `${r.name}.qcow2`);
    r.make(p);
    const bytes = new Uint8Array(readFileSync(p));
    return { name: r.name, bytes, layout: layoutOf(bytes) };
  });
}
