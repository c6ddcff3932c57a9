// Images beyond repair for the wizard's salvage path, made with qemu-img/qemu-io at test time:
// the same guest patterns as images.ts (0x5a at 0..128k, 0xa5 at 1M..1M+64k), then the header
// cluster or the L1 table zeroed. 64 KiB clusters: the header is cluster 0, the L1 table cluster 3.
import { join } from 'node:path';
import { createQcow2, qemuIo, readU64, writeBytes } from '../helpers/qemu.js';
import { PATTERNS } from './images.js';

function base(file: string): string {
  createQcow2(file, '64M');
  qemuIo(
    file,
    PATTERNS.map(([p, off, len]) => `write -P 0x${p.toString(16)} ${off} ${len}`),
  );
  return file;
}

/** Cluster 0 (header, header extensions) zeroed: QEMU sees no qcow2 image at all. */
export function makeHeaderZeroed(dir: string, name = 'header-zeroed.qcow2'): string {
  const f = base(join(dir, name));
  writeBytes(f, 0, new Uint8Array(64 * 1024));
  return f;
}

/** The active L1 table zeroed: the disk reads as empty, its L2 table and data are "leaked". */
export function makeL1Zeroed(dir: string, name = 'l1-zeroed.qcow2'): string {
  const f = base(join(dir, name));
  const l1 = Number(readU64(f, 40));
  writeBytes(f, l1, new Uint8Array(64 * 1024));
  return f;
}

/** The header's L1 table offset pointed past the end of the file: "Could not read L1 table". */
export function makeL1Unreadable(dir: string, name = 'l1-unreadable.qcow2'): string {
  const f = base(join(dir, name));
  writeBytes(f, 40, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0])); // 4 GiB: far past the end of the file
  return f;
}

/**
 * Two L2 tables (guest 0..512M and 512M..1G); the second one overwritten with 0xff: the repair
 * refuses to guess about its entries, salvage recovers the first pattern and reports 512M..1G lost.
 */
export function makeL2Overwritten(dir: string, name = 'l2-overwritten.qcow2'): string {
  const f = join(dir, name);
  createQcow2(f, '1G');
  qemuIo(f, ['write -P 0x5a 0 128k', 'write -P 0xc3 600M 64k']);
  const l1 = Number(readU64(f, 40));
  const l2 = Number(readU64(f, l1 + 8) & 0x00ffffffffffff00n);
  writeBytes(f, l2, new Uint8Array(64 * 1024).fill(0xff));
  return f;
}

/**
 * 4 KiB clusters, data at 0..3M (0x11), 37M..42M (0x22) and 200M (0x33, 64k): six L2 tables; the
 * L1 table zeroed. Nothing that survives says where the tables past the first belong.
 */
export function makeL1ZeroedScattered(dir: string, name = 'l1-zeroed-scattered.qcow2'): string {
  const f = join(dir, name);
  createQcow2(f, '256M', { cluster_size: 4096 });
  qemuIo(f, ['write -P 0x11 0 3M', 'write -P 0x22 37M 5M', 'write -P 0x33 200M 64k']);
  const l1 = Number(readU64(f, 40));
  writeBytes(f, l1, new Uint8Array(128 * 8));
  return f;
}
