// Salvage measures what its output can take before writing it: a tiny image whose tables map
// terabytes of guest data to one cluster is refused in one line naming the sizes, with nothing
// written; an ordinary image's bound is the clusters it maps.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { salvageImage, scanAndReconstruct } from '../../engine/salvage/salvage.js';
import { outputBytes, outputDataClusters } from '../../engine/salvage/output-space.js';
import { FileIO } from '../../engine/io/file-io.js';
import { createQcow2, patchU64, qemuIo, readU64, tempDir } from '../helpers/qemu.js';

const t = tempDir();
afterAll(() => t.cleanup());
const p = (n: string) => join(t.dir, n);
const cs = 65536;

describe('salvage output size against free space', () => {
  it('refuses a 4 TiB output from a sub-MiB image before writing a byte', async () => {
    const f = p('amplifier.qcow2');
    createQcow2(f, '4T', { cluster_size: cs });
    qemuIo(f, ['write -P 0x55 0 64k']);
    const l1 = Number(readU64(f, 40));
    const l1Entry = readU64(f, l1);
    const l2 = Number(l1Entry & 0x00fffffffffffe00n);
    const l2Entry = readU64(f, l2);
    // Every L2 entry names the one data cluster; every L1 entry names the one L2 table.
    for (let i = 1; i < cs / 8; i++) patchU64(f, l2 + 8 * i, l2Entry);
    for (let i = 1; i < 8192; i++) patchU64(f, l1 + 8 * i, l1Entry);
    expect(statSync(f).size).toBeLessThan(1024 * 1024);
    const out = p('amplified.raw');
    await expect(salvageImage(f, out)).rejects.toThrow(
      new RegExp(
        `^not enough free space for the salvaged disk: it may take 4\\.0 TiB \\(4398046511104 bytes\\), and ${t.dir} has [0-9.]+ [KMGT]iB \\(\\d+ bytes\\) free$`,
      ),
    );
    await expect(salvageImage(f, p('amplified.qcow2'), { format: 'qcow2' })).rejects.toThrow(
      /^not enough free space for the salvaged disk: it may take 4\.0 TiB/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(t.dir).filter((n) => n.includes('amplified'))).toEqual([]);
  });

  it('an ordinary image needs its mapped clusters (zero clusters and holes cost nothing)', async () => {
    const f = p('ordinary.qcow2');
    createQcow2(f, '1G', { cluster_size: cs });
    qemuIo(f, ['write -P 0x11 0 192k', 'write -z 1M 64k', 'write -P 0x22 512M 64k']);
    const io = await FileIO.open(f);
    try {
      const a = await scanAndReconstruct(io);
      const active = a.recon.views.find((v) => v.kind === 'active')!;
      expect(await outputDataClusters(io, a.fileSize, a.recon, active, 0)).toBe(4);
      // With a backing disk of 512 MiB, the clusters the overlay leaves unallocated may hold data too:
      // 4 mapped, and 8192 - 3 data - 1 zero of the backing's.
      expect(await outputDataClusters(io, a.fileSize, a.recon, active, 512 << 20)).toBe(4 + 8192 - 4);
    } finally {
      await io.close();
    }
    const r = await salvageImage(f, p('ordinary.raw'));
    expect(r.views[0]!.lost).toEqual([]);
    expect(outputBytes('raw', 4, cs, 1 << 30)).toBe(4 * cs);
    // qcow2 output: data, an L2 table per 512 MiB of guest holding data, L1, header, refcounts.
    expect(outputBytes('qcow2', 4, cs, 1 << 30)).toBeGreaterThanOrEqual((4 + 2 + 1 + 1 + 2) * cs);
  });
});
