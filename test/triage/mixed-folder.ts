// A folder of small, mixed images made by qemu-img/qemu-io and damaged at precise bytes: the kind
// of bundle a support engineer receives. Used by the triage tests (and kept small: 1–64 MiB virtual).
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU16, patchU64, qemuImg, qemuIo, readBytes, run } from '../helpers/qemu.js';

/** 64 MiB, 64 KiB clusters: data clusters 5, 6 (0x5a) and 7 (0xa5); L2 at 0x40000. */
function base(file: string, options: Record<string, string | number | boolean> = {}): void {
  createQcow2(file, '64M', options);
  qemuIo(file, ['write -P 0x5a 0 128k', 'write -P 0xa5 1M 64k']);
}

/** Builds the folder and returns the image file names it contains (relative to `dir`). */
export function buildMixedFolder(dir: string): string[] {
  const made: string[] = [];
  const f = (name: string): string => {
    const p = join(dir, name);
    mkdirSync(join(p, '..'), { recursive: true });
    made.push(name);
    return p;
  };

  base(f('clean.qcow2'));
  let p = f('leak.qcow2');
  base(p);
  patchU64(p, 0x40008, 0);
  p = f('leaks-two.qcow2');
  base(p);
  patchU64(p, 0x40008, 0);
  patchU64(p, 0x40000 + 16 * 8, 0);
  p = f('refcount-too-high.qcow2');
  base(p);
  patchU16(p, 0x20000 + 5 * 2, 2);
  p = f('refcount-zero.qcow2');
  base(p);
  patchU16(p, 0x20000 + 5 * 2, 0);
  p = f('cross-link.qcow2');
  base(p);
  patchU64(p, 0x40008, 0x8000000000050000n);
  p = f('copied-missing.qcow2');
  base(p);
  patchU64(p, 0x40000, 0x50000n);
  p = f('reserved-bits.qcow2');
  base(p);
  patchU64(p, 0x40000, 0x8000000000050002n);
  p = f('beyond-eof.qcow2');
  base(p);
  patchU64(p, 0x40000, 0x8000000001000000n);
  p = f('unaligned-refblock.qcow2');
  base(p);
  patchU64(p, 0x10000, 0x20200n);
  p = f('unknown-feature.qcow2');
  base(p);
  patchU64(p, 72, 0x40n);

  p = f('dirty.qcow2');
  createQcow2(p, '64M', { lazy_refcounts: true });
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 128k', '-c', 'sigraise 9', p]);
  p = f('corrupt-bit.qcow2');
  base(p);
  patchU64(p, 72, 2n);

  base(f('v2/clean-v2.qcow2'), { compat: '0.10' });
  p = f('v2/leak-v2.qcow2');
  base(p, { compat: '0.10' });
  patchU64(p, 0x40008, 0);

  p = f('compressed.qcow2');
  createQcow2(p, '16M');
  qemuIo(p, ['write -c -P 0x11 0 64k', 'write -c -P 0x22 64k 64k', 'write -P 0x33 1M 64k']);
  p = f('snapshots.qcow2');
  base(p);
  qemuImg('snapshot', '-c', 'one', p);
  qemuIo(p, ['write -P 0x3c 0 64k']);
  qemuImg('snapshot', '-c', 'two', p);
  p = f('snapshot-unaligned-l1.qcow2');
  base(p);
  qemuImg('snapshot', '-c', 'one', p);
  const snap = Number(readBytes(p, 64, 8).readBigUInt64BE());
  patchU64(p, snap, readBytes(p, snap, 8).readBigUInt64BE() + 0x200n);

  p = f('chain/base.qcow2');
  base(p);
  const ov = f('chain/overlay.qcow2');
  createQcow2(ov, '64M', {}, { file: 'base.qcow2', format: 'qcow2' });
  qemuIo(ov, ['write -P 0x44 2M 64k']);
  const orphan = f('chain/orphan.qcow2');
  createQcow2(orphan, '64M', {}, { file: 'base.qcow2', format: 'qcow2' });
  qemuImg('rebase', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', orphan);

  base(f('small-clusters.qcow2'), { cluster_size: 512 });
  base(f('extended-l2.qcow2'), { extended_l2: true });
  p = f('bitmaps.qcow2');
  base(p);
  qemuImg('bitmap', '--add', p, 'b0');

  p = f('not-an-image.qcow2');
  writeFileSync(p, Buffer.alloc(1 << 20, 0x61));
  p = f('bad-magic.qcow2');
  base(p);
  patchU64(p, 0, 0x514649fc00000003n);
  p = f('truncated.qcow2');
  base(p);
  truncateSync(p, 0x48000);
  p = f('truncated-header.qcow2');
  base(p);
  truncateSync(p, 100);

  // Not images: skipped by the folder walk.
  writeFileSync(join(dir, 'README.txt'), 'customer notes\n');
  writeFileSync(join(dir, 'v2', 'disk.raw'), Buffer.alloc(4096));
  return made;
}
