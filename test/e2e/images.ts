// Real images for the end-to-end tests and the bench, made with qemu-img/qemu-io at test time.
import { join } from 'node:path';
import { createQcow2, patchU64, qemuImg, qemuIo, readU64 } from '../helpers/qemu.js';

/** 64 MiB, 64 KiB clusters, a few data runs; clean. */
export function makeClean(dir: string): string {
  const f = join(dir, 'clean.qcow2');
  createQcow2(f, '64M');
  qemuIo(f, ['write -P 0x11 0 1M', 'write -P 0x22 8M 512k', 'write -z 16M 128k', 'write -c -P 0x33 20M 64k']);
  return f;
}

/** 32 MiB, 4 KiB clusters, two snapshots with diverging data. */
export function makeSnapshots(dir: string): string {
  const f = join(dir, 'snapshots.qcow2');
  createQcow2(f, '32M', { cluster_size: 4096 });
  qemuIo(f, ['write -P 0x11 0 96k', 'write -P 0x22 1M 64k']);
  qemuImg('snapshot', '-c', 'installed', f);
  qemuIo(f, ['write -P 0x55 0 32k', 'write -P 0x66 16M 48k']);
  qemuImg('snapshot', '-c', 'updated', f);
  qemuIo(f, ['write -P 0x77 4k 8k']);
  return f;
}

/**
 * 16 MiB, 4 KiB clusters; then L2 entry 3 cleared (its data cluster leaks) and L2 entry 5 pointed
 * at entry 4's data cluster (refcount 1, two references: a corruption QEMU reports as ERROR).
 */
export function makeDamaged(dir: string): { file: string; l2: number } {
  const f = join(dir, 'damaged.qcow2');
  createQcow2(f, '16M', { cluster_size: 4096 });
  qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 4M 32k']);
  const l1 = Number(readU64(f, 40));
  const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
  patchU64(f, l2 + 3 * 8, 0n);
  patchU64(f, l2 + 5 * 8, readU64(f, l2 + 4 * 8));
  return { file: f, l2 };
}
