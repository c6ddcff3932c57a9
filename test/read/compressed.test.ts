// The one decompressor: QEMU's own compressed streams, several zstd frames and trailing junk,
// garbage, truncation, bombs (output never past one cluster; a frame declaring more is refused
// before decoding), and the leniency option on and off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DecompressionError,
  decompressCluster,
  zstdFrameHeader,
  zstdFrameInfo,
  type DecompressOptions,
} from '../../engine/image/compressed.js';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from '../../engine/format/constants.js';
import { qemuImg, readBytes, readU64, tempDir } from '../helpers/qemu.js';

const cs = 65536;
const strict = (type: DecompressOptions['type']): DecompressOptions => ({ type, clusterSize: cs, lenient: false });
const lenient = (type: DecompressOptions['type']): DecompressOptions => ({ type, clusterSize: cs, lenient: true });

/** A zstd frame holding `data` in one raw block (no compression needed to build it). */
function rawZstdFrame(data: Uint8Array): Buffer {
  const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]); // magic, FHD (no flags), window descriptor 2^21
  const bh = (data.length << 3) | (0 << 1) | 1;
  return Buffer.concat([head, Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff]), data]);
}

const zstdCli = (data: Uint8Array, extra: string[] = []) =>
  execFileSync('zstd', ['-q', '-c', ...extra, '-'], { input: data, maxBuffer: 1 << 28 });

/** 1 GiB of zeros through Debian's zstd CLI (it records no content size when reading a pipe). */
function zstdZeroBomb(): Buffer {
  return execFileSync('sh', ['-c', 'head -c 1073741824 /dev/zero | zstd -q -c'], { maxBuffer: 1 << 24 });
}

/** The same by hand, with the content size (1 GiB) declared in the frame header: 8192 RLE blocks. */
function declaredZeroBomb(): Buffer {
  const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x58, 0, 0, 0, 0x40, 0, 0, 0, 0]); // FCS 8 bytes, window 2 MiB
  const blocks: Buffer[] = [];
  for (let i = 0; i < 8192; i++) {
    const bh = ((128 * 1024) << 3) | (1 << 1) | (i === 8191 ? 1 : 0);
    blocks.push(Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff, 0]));
  }
  return Buffer.concat([head, ...blocks]);
}

const content = Buffer.alloc(2 * cs);
for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 9) + ((i * i) >> 13)) & 0xff;

describe('QEMU-written compressed clusters', () => {
  const t = tempDir();
  const streams: Record<'zlib' | 'zstd', Buffer[]> = { zlib: [], zstd: [] };
  beforeAll(() => {
    const raw = join(t.dir, 'src.raw');
    writeFileSync(raw, content);
    for (const type of ['zlib', 'zstd'] as const) {
      const f = join(t.dir, `${type}.qcow2`);
      qemuImg('convert', '-q', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs},compression_type=${type}`, raw, f);
      const l1 = Number(readU64(f, 40));
      const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
      for (let i = 0; i < 2; i++) {
        const entry = readU64(f, l2 + 8 * i);
        expect(entry & (1n << 62n)).not.toBe(0n); // compressed
        const offset = Number(entry & ((1n << 54n) - 1n));
        const sectors = Number((entry >> 54n) & 0xffn) + 1;
        streams[type].push(readBytes(f, offset, sectors * 512 - (offset % 512)));
      }
    }
  });
  afterAll(() => t.cleanup());

  for (const [name, type] of [
    ['zlib', COMPRESSION_ZLIB],
    ['zstd', COMPRESSION_ZSTD],
  ] as const) {
    it(`${name}: both clusters decompress to what was written, strict and lenient alike`, () => {
      for (let i = 0; i < 2; i++) {
        const want = content.subarray(i * cs, (i + 1) * cs);
        const s = decompressCluster(streams[name][i]!, strict(type));
        expect(s.produced).toBe(cs);
        expect(Buffer.from(s.data).equals(want)).toBe(true);
        const l = decompressCluster(streams[name][i]!, lenient(type));
        expect(l.problem).toBeUndefined();
        expect(Buffer.from(l.data).equals(want)).toBe(true);
      }
    });

    it(`${name}: the compression type is detected by magic when the header that names it is gone`, () => {
      expect(
        Buffer.from(decompressCluster(streams[name][0]!, strict('detect')).data).equals(content.subarray(0, cs)),
      ).toBe(true);
    });

    it(`${name}: a stream cut short is refused strictly; leniently it gives what came out, the rest zero`, () => {
      const full = streams[name][0]!;
      const cut = full.subarray(0, Math.floor(full.length / 2));
      expect(() => decompressCluster(cut, strict(type))).toThrow(
        new RegExp(`^${name === 'zlib' ? 'deflate' : 'zstd'} stream ends after \\d+ of 65536 bytes$`),
      );
      const l = decompressCluster(cut, lenient(type));
      expect(l.produced).toBeLessThan(cs);
      expect(l.problem).toMatch(/ends after/);
      expect(Buffer.from(l.data.subarray(0, l.produced)).equals(content.subarray(0, l.produced))).toBe(true);
      expect(l.data.subarray(l.produced).every((b) => b === 0)).toBe(true);
    });

    it(`${name}: garbage is refused with one line, and leniently gives nothing`, () => {
      const junk = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), randomBytes(508)]);
      let err: unknown;
      try {
        decompressCluster(junk, strict(type));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DecompressionError);
      expect((err as Error).message).not.toContain('\n');
      const l = decompressCluster(junk, lenient(type));
      expect(l.produced).toBe(0);
      expect(l.data.every((b) => b === 0)).toBe(true);
    });
  }
});

describe('zstd streams', () => {
  it('several frames, a skippable frame and trailing junk give exactly one cluster', () => {
    const c = content.subarray(0, cs);
    const skippable = Buffer.concat([Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]), Buffer.from('skip')]);
    const stream = Buffer.concat([
      skippable,
      zstdCli(c.subarray(0, 1000)),
      rawZstdFrame(c.subarray(1000, 5000)),
      zstdCli(c.subarray(5000)),
      zstdCli(Buffer.from('beyond the cluster: ignored')),
      Buffer.alloc(300, 0xee),
    ]);
    expect(Buffer.from(decompressCluster(stream, strict(COMPRESSION_ZSTD)).data).equals(c)).toBe(true);
  });

  it('a stream that ends early names the bytes that came out', () => {
    const short = zstdCli(content.subarray(0, 4096));
    expect(() => decompressCluster(short, strict(COMPRESSION_ZSTD))).toThrow(
      /^zstd stream ends after 4096 of 65536 bytes$/,
    );
    const l = decompressCluster(short, lenient(COMPRESSION_ZSTD));
    expect(l.produced).toBe(4096);
    expect(Buffer.from(l.data.subarray(0, 4096)).equals(content.subarray(0, 4096))).toBe(true);
  });

  it('1 GiB of zeros without a declared size: decoding stops at the cluster, strictly an error', () => {
    const bomb = zstdZeroBomb();
    expect(zstdFrameHeader(bomb, 0)?.contentSize).toBeUndefined();
    let err: DecompressionError | undefined;
    try {
      decompressCluster(bomb, strict(COMPRESSION_ZSTD));
    } catch (e) {
      err = e as DecompressionError;
    }
    expect(err).toBeInstanceOf(DecompressionError);
    expect(err!.reason).toBe('zstd frame produces more than the cluster size (65536 bytes)');
    expect(err!.produced).toBe(cs);
    // Leniently: the frame's first cluster, and the reason it was cut there.
    const l = decompressCluster(bomb, lenient(COMPRESSION_ZSTD));
    expect(l.produced).toBe(cs);
    expect(l.data.length).toBe(cs);
    expect(l.problem).toMatch(/more than the cluster size/);
  });

  it('1 GiB of zeros with the size declared in the frame header is refused before any decoding', () => {
    const bomb = declaredZeroBomb();
    expect(zstdFrameInfo(bomb, 0)?.maxOutput).toBe(1 << 30);
    expect(zstdFrameHeader(bomb, 0)?.contentSize).toBe(1 << 30);
    for (const lenientToo of [false, true]) {
      let produced = -1;
      let reason = '';
      try {
        const r = decompressCluster(bomb, { type: COMPRESSION_ZSTD, clusterSize: cs, lenient: lenientToo });
        produced = r.produced;
        reason = r.problem ?? '';
      } catch (e) {
        produced = (e as DecompressionError).produced;
        reason = (e as DecompressionError).reason;
      }
      expect(produced).toBe(0);
      expect(reason).toBe('zstd frame declares 1073741824 bytes of content, more than the cluster size (65536 bytes)');
    }
  });

  it('a frame asking for a huge window is refused before the decoder allocates it', () => {
    // Window descriptor 0xf8: 2^41 bytes; one empty raw block.
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x01, 0x00, 0x00]);
    expect(zstdFrameHeader(frame, 0)?.windowSize).toBe(2 ** 41);
    expect(() => decompressCluster(frame, strict(COMPRESSION_ZSTD))).toThrow(/needs a window of 2199023255552 bytes/);
  });

  it('RLE blocks promising 125 MiB stop after the first block past the cluster', () => {
    const head = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]);
    const blocks: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const bh = ((128 * 1024) << 3) | (1 << 1) | (i === 999 ? 1 : 0); // RLE block of 128 KiB
      blocks.push(Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff, 0x41]));
    }
    const bomb = Buffer.concat([head, ...blocks]);
    expect(zstdFrameInfo(bomb, 0)?.maxOutput).toBe(1000 * 128 * 1024);
    expect(() => decompressCluster(bomb, strict(COMPRESSION_ZSTD))).toThrow(/more than the cluster size/);
    const l = decompressCluster(bomb, lenient(COMPRESSION_ZSTD));
    expect(l.data.every((b) => b === 0x41)).toBe(true);
  });
});

describe('deflate streams', () => {
  const c = content.subarray(0, cs);
  it("raw streams with QEMU's 4 KiB window or a 32 KiB one, trailing junk ignored", () => {
    for (const windowBits of [12, 15]) {
      const stream = Buffer.concat([deflateRawSync(c, { windowBits }), Buffer.alloc(100, 0x99)]);
      expect(Buffer.from(decompressCluster(stream, strict(COMPRESSION_ZLIB)).data).equals(c)).toBe(true);
    }
  });

  it('short output and garbage are refused with one line', () => {
    const half = deflateRawSync(c.subarray(0, cs / 2));
    expect(() => decompressCluster(half, strict(COMPRESSION_ZLIB))).toThrow(
      /^deflate stream ends after 32768 of 65536 bytes$/,
    );
    expect(() => decompressCluster(Buffer.from([0xff, 0xff, 0xff, 0xff]), strict(COMPRESSION_ZLIB))).toThrow(
      /^invalid deflate stream after 0 of 65536 bytes/,
    );
  });

  it('valid data then garbage: strictly refused, leniently the valid part', () => {
    const good = deflateRawSync(c.subarray(0, 20000), { finishFlush: 2 /* Z_SYNC_FLUSH: no final block */ });
    const bad = Buffer.concat([good, Buffer.from([0xff, 0xff, 0xff, 0xff]), randomBytes(64)]);
    expect(() => decompressCluster(bad, strict(COMPRESSION_ZLIB))).toThrow(/^invalid deflate stream after 20000 of/);
    const l = decompressCluster(bad, lenient(COMPRESSION_ZLIB));
    expect(l.produced).toBe(20000);
    expect(Buffer.from(l.data.subarray(0, 20000)).equals(c.subarray(0, 20000))).toBe(true);
  });

  it('a stream longer than a cluster yields its first cluster, as QEMU reads it', () => {
    const long = Buffer.concat([c, Buffer.alloc(cs * 40, 1), c]);
    const got = decompressCluster(deflateRawSync(long), strict(COMPRESSION_ZLIB));
    expect(Buffer.from(got.data).equals(c)).toBe(true);
  });

  it('a bomb of 64 MiB of zeros gives one cluster of zeros (QEMU reads it so) and no more', () => {
    const bomb = deflateRawSync(Buffer.alloc(64 << 20), { level: 9 });
    expect(bomb.length).toBeLessThan(70_000);
    const got = decompressCluster(bomb, strict(COMPRESSION_ZLIB));
    expect(got.produced).toBe(cs);
    expect(got.data.length).toBe(cs);
    expect(got.data.every((b) => b === 0)).toBe(true);
  });
});
