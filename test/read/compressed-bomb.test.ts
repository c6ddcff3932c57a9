// Decompression bombs inside real images: one compressed cluster whose stream is a zstd frame of
// 1 GiB of zeros (made by Debian's zstd CLI), or a deflate stream of 64 MiB of zeros. Check, export
// and salvage each decode at most one cluster of it and answer with a clear finding or error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { checkFile } from '../../engine/check/index.js';
import { openChain } from '../../engine/image/backing-chain.js';
import { exportRaw } from '../../engine/image/export.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { salvageImage } from '../../engine/salvage/salvage.js';
import {
  createQcow2,
  patchU64,
  qemuCheck,
  qemuImg,
  qemuIo,
  readU64,
  run,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';

const cs = 65536;

/**
 * A 1 MiB image whose guest cluster 1 is compressed (stream at a fresh host cluster), with that
 * stream replaced by `stream`: the descriptor's sector count is widened to cover it.
 */
function bombImage(file: string, type: 'zlib' | 'zstd', stream: Uint8Array): void {
  createQcow2(file, '1M', { cluster_size: cs, compression_type: type });
  qemuIo(file, ['write -P 0x11 0 64k', 'write -c -P 0x22 64k 64k', 'write -P 0x33 128k 64k']);
  const l1 = Number(readU64(file, 40));
  const l2 = Number(readU64(file, l1) & 0x00fffffffffffe00n);
  const entry = readU64(file, l2 + 8);
  expect(entry & (1n << 62n)).not.toBe(0n);
  const offset = Number(entry & ((1n << 54n) - 1n));
  // The new stream stays inside the host cluster the original one started in (refcounts stay right).
  expect((offset % cs) + stream.length).toBeLessThanOrEqual(cs);
  const sectors = Math.ceil(((offset % 512) + stream.length) / 512);
  writeBytes(file, offset, stream);
  patchU64(file, l2 + 8, (1n << 62n) | (BigInt(sectors - 1) << 54n) | BigInt(offset));
}

async function exportError(file: string): Promise<{ error?: Error; out: MemoryIO }> {
  const out = new MemoryIO();
  const chain = await openChain(file);
  try {
    await exportRaw(chain, out, {});
    return { out };
  } catch (e) {
    return { error: e as Error, out };
  } finally {
    await chain.close();
  }
}

describe('a zstd frame of 1 GiB of zeros in one compressed cluster', () => {
  const t = tempDir();
  const f = join(t.dir, 'zstd-bomb.qcow2');
  beforeAll(() => {
    const bomb = execFileSync('sh', ['-c', 'head -c 1073741824 /dev/zero | zstd -q -c'], { maxBuffer: 1 << 24 });
    bombImage(f, 'zstd', bomb);
  });
  afterAll(() => t.cleanup());

  it('is a small image QEMU checks clean and refuses to read (EIO)', () => {
    expect(readFileSync(f).length).toBeLessThanOrEqual(512 * 1024);
    expect(qemuCheck(f).status).toBe(0);
    const r = run('qemu-io', ['-f', 'qcow2', '-c', 'read 64k 64k', f]);
    expect(r.stdout + r.stderr).toMatch(/Input\/output error/);
  });

  it('check: finishes with the compressed-undecodable finding on that cluster, counters as QEMU', async () => {
    const r = await checkFile(f);
    expect(r.counters.corruptions).toBe(0);
    const finding = r.anomalies.find((a) => a.kind === 'compressed-undecodable');
    expect(finding).toBeDefined();
  });

  it('export: refuses with one line naming the output bound', async () => {
    const { error } = await exportError(f);
    expect(error?.message).toMatch(
      /^Could not decompress cluster: zstd frame produces more than the cluster size \(65536 bytes\) \(compressed cluster at guest offset 0x10000 = offset 0x[0-9a-f]+, \d+ sectors\)$/,
    );
  });

  it('salvage: reports that guest cluster lost and keeps the clusters around it', async () => {
    const out = join(t.dir, 'zstd-bomb.raw');
    const r = await salvageImage(f, out);
    const lost = r.views[0]!.lost;
    expect(lost).toEqual([{ start: cs, end: 2 * cs, reason: expect.stringMatching(/does not decompress$/) }]);
    const got = readFileSync(out);
    expect(got.subarray(0, cs).every((b) => b === 0x11)).toBe(true);
    expect(got.subarray(2 * cs, 3 * cs).every((b) => b === 0x33)).toBe(true);
  });
});

describe('a deflate stream of 64 MiB of zeros in one compressed cluster', () => {
  const t = tempDir();
  const f = join(t.dir, 'zlib-bomb.qcow2');
  beforeAll(() => bombImage(f, 'zlib', deflateRawSync(Buffer.alloc(64 << 20), { level: 9 })));
  afterAll(() => t.cleanup());

  it('export reads its first cluster, byte for byte what qemu-img convert reads', async () => {
    const { error, out } = await exportError(f);
    expect(error).toBeUndefined();
    const ref = join(t.dir, 'ref.raw');
    qemuImg('convert', '-O', 'raw', f, ref);
    const want = readFileSync(ref);
    const got = Buffer.from(await out.read(0, want.length));
    expect(got.equals(want)).toBe(true);
    expect(got.subarray(cs, 2 * cs).every((b) => b === 0)).toBe(true);
  });

  it('check finds nothing wrong (the stream decodes by QEMU rules); salvage recovers it', async () => {
    const r = await checkFile(f);
    expect(r.anomalies.find((a) => a.kind === 'compressed-undecodable')).toBeUndefined();
    const s = await salvageImage(f, join(t.dir, 'zlib-bomb.raw'));
    expect(s.views[0]!.lost).toEqual([]);
  });
});
