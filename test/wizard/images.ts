// Damaged images for the recovery wizard, made with qemu-img/qemu-io at test time. Every image holds
// guest data patterns that must survive the repair: 0x5a at 0..128k and 0xa5 at 1M..1M+64k.
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU16, patchU64, qemuIo, readBytes, readU64, run, writeBytes } from '../helpers/qemu.js';

export const PATTERNS: Array<[number, string, string]> = [
  [0x5a, '0', '128k'],
  [0xa5, '1M', '64k'],
];

function base(file: string, options: Record<string, string | number | boolean> = {}): string {
  createQcow2(file, '64M', options);
  qemuIo(
    file,
    PATTERNS.map(([p, off, len]) => `write -P 0x${p.toString(16)} ${off} ${len}`),
  );
  return file;
}

/**
 * A cluster written at guest 2M, then its L2 entry cleared and its content zeroed: the cluster is
 * leaked and holds nothing (wasted space only; with its data left in, it would be orphaned data).
 */
export function makeLeaks(dir: string, name = 'leaks.qcow2'): string {
  const f = base(join(dir, name));
  qemuIo(f, ['write -P 0x33 2M 64k']);
  const host = Number(readU64(f, 0x40000 + 32 * 8) & 0x00fffffffffffe00n);
  patchU64(f, 0x40000 + 32 * 8, 0); // guest 2M: its cluster (8) is leaked; that range now reads zeros
  writeBytes(f, host, new Uint8Array(65536));
  return f;
}

/**
 * Refcount errors: guest 64k's L2 entry pointed at guest 0's cluster (5; both hold 0x5a), so cluster
 * 5 has refcount 1 but two references (an error) and cluster 6 is leaked.
 */
export function makeRefcountErrors(dir: string, name = 'refcount-errors.qcow2'): string {
  const f = base(join(dir, name));
  patchU64(f, 0x40008, 0x8000000000050000n);
  return f;
}

/** Not closed cleanly with lazy refcounts: the dirty bit is set and refcounts are stale. */
export function makeDirty(dir: string, name = 'dirty.qcow2'): string {
  const f = join(dir, name);
  createQcow2(f, '64M', { lazy_refcounts: true });
  run('qemu-io', [
    '-f',
    'qcow2',
    ...PATTERNS.flatMap(([p, off, len]) => ['-c', `write -P 0x${p.toString(16)} ${off} ${len}`]),
    '-c',
    'sigraise 9',
    f,
  ]);
  return f;
}

/** A cluster in use but counted free: only a rebuild of the refcount structure fixes it. */
export function makeNeedsRebuild(dir: string, name = 'needs-rebuild.qcow2'): string {
  const f = base(join(dir, name));
  patchU16(f, 0x20000 + 6 * 2, 0); // data cluster 6 (guest 64k..128k): refcount 0, one reference
  return f;
}

/** qemu-io reading back each pattern: throws when a byte differs. */
export function assertPatterns(file: string, format: 'qcow2' | 'raw' = 'qcow2'): void {
  qemuIo(
    file,
    PATTERNS.map(([p, off, len]) => `read -P 0x${p.toString(16)} ${off} ${len}`),
    { format },
  );
}

/** 4 KiB clusters, 16 MiB written, then every other L2 entry cleared: 2048 separate leaks. */
export function makeManyLeaks(dir: string, name = 'many-leaks.qcow2'): string {
  const f = join(dir, name);
  createQcow2(f, '64M', { cluster_size: 4096 });
  qemuIo(f, ['write -P 0x5a 0 16M']);
  const l1 = Number(readU64(f, 40));
  const zeroed: number[] = [];
  for (let i = 0; i < 8; i++) {
    const l2 = Number(readU64(f, l1 + 8 * i) & 0x00fffffffffffe00n);
    const table = readBytes(f, l2, 4096);
    for (let j = 1; j < 512; j += 2) {
      // The leaked cluster emptied too: wasted space, not orphaned data.
      const host = Number(table.readBigUInt64BE(j * 8) & 0x00fffffffffffe00n);
      if (host) zeroed.push(host);
      table.writeBigUInt64BE(0n, j * 8);
    }
    writeBytes(f, l2, table);
  }
  const fd = openSync(f, 'r+');
  const empty = new Uint8Array(4096);
  for (const host of zeroed) writeSync(fd, empty, 0, empty.length, host);
  closeSync(fd);
  return f;
}
