// Decompressing one cluster as QEMU does, and a little more leniently: zstd streams of several
// frames (and skippable frames), trailing junk, deflate with any window; bounded output.
import { describe, expect, it } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { decompressCluster, DecompressionError, zstdFrameInfo } from '../../engine/image/compressed.js';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from '../../engine/format/constants.js';

/** A zstd frame holding `data` in one raw block (no compression needed to build it). */
function rawZstdFrame(data: Uint8Array): Buffer {
  const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]); // magic, FHD (no flags), window descriptor 2^21
  const bh = (data.length << 3) | (0 << 1) | 1;
  return Buffer.concat([head, Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff]), data]);
}

const zstdCli = (data: Uint8Array) => execFileSync('zstd', ['-q', '-c', '-'], { input: data });

describe('compressed clusters', () => {
  const cs = 65536;
  const content = Buffer.alloc(cs);
  for (let i = 0; i < cs; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;

  it('zstd: several frames, a skippable frame and trailing junk give exactly one cluster', () => {
    const skippable = Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]), Buffer.from('skip')]);
    const stream = Buffer.concat([
      skippable,
      zstdCli(content.subarray(0, 1000)),
      rawZstdFrame(content.subarray(1000, 5000)),
      zstdCli(content.subarray(5000)),
      zstdCli(Buffer.from('beyond the cluster: ignored')),
      Buffer.alloc(300, 0xee),
    ]);
    expect(Buffer.from(decompressCluster(stream, COMPRESSION_ZSTD, cs)).equals(content)).toBe(true);
  });

  it('zstd: a stream that ends early or is not zstd is refused with one line', () => {
    const short = zstdCli(content.subarray(0, 4096));
    expect(() => decompressCluster(short, COMPRESSION_ZSTD, cs)).toThrow(
      /^zstd stream ends after 4096 of 65536 bytes$/,
    );
    expect(() => decompressCluster(randomBytes(512), COMPRESSION_ZSTD, cs)).toThrow(DecompressionError);
    const cut = zstdCli(content);
    expect(() => decompressCluster(cut.subarray(0, cut.length - 10), COMPRESSION_ZSTD, cs)).toThrow(DecompressionError);
  });

  it('zstd: a frame that could expand far beyond a cluster is refused before decoding', () => {
    const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]);
    const blocks: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const bh = ((128 * 1024) << 3) | (1 << 1) | (i === 999 ? 1 : 0); // RLE block of 128 KiB
      blocks.push(Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff, 0x41]));
    }
    const bomb = Buffer.concat([head, ...blocks]);
    expect(zstdFrameInfo(bomb, 0)?.maxOutput).toBe(1000 * 128 * 1024);
    expect(() => decompressCluster(bomb, COMPRESSION_ZSTD, cs)).toThrow(/more than the cluster size/);
  });

  it("deflate: raw streams with QEMU's 4 KiB window or a 32 KiB one, trailing junk ignored", () => {
    for (const windowBits of [12, 15]) {
      const stream = Buffer.concat([deflateRawSync(content, { windowBits }), Buffer.alloc(100, 0x99)]);
      expect(Buffer.from(decompressCluster(stream, COMPRESSION_ZLIB, cs)).equals(content)).toBe(true);
    }
  });

  it('deflate: short output and garbage are refused with one line', () => {
    const half = deflateRawSync(content.subarray(0, cs / 2));
    expect(() => decompressCluster(half, COMPRESSION_ZLIB, cs)).toThrow(
      /^deflate stream ends after 32768 of 65536 bytes$/,
    );
    expect(() => decompressCluster(Buffer.from([0xff, 0xff, 0xff, 0xff]), COMPRESSION_ZLIB, cs)).toThrow(
      /^invalid deflate stream/,
    );
  });

  it('deflate: a stream longer than a cluster yields its first cluster, as QEMU reads it', () => {
    const long = Buffer.concat([content, Buffer.alloc(cs * 40, 1), content]);
    const got = decompressCluster(deflateRawSync(long), COMPRESSION_ZLIB, cs);
    expect(Buffer.from(got).equals(content)).toBe(true);
    const ones = decompressCluster(deflateRawSync(Buffer.alloc(cs * 100, 1)), COMPRESSION_ZLIB, cs);
    expect(ones.length).toBe(cs);
    expect(ones.every((b) => b === 1)).toBe(true);
  });
});
