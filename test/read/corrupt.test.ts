// Damaged or unreadable images: the read path refuses with one line naming the structure, field
// and value (QEMU's wording where QEMU has one), never crashes, and never writes.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { truncateSync } from 'node:fs';
import { openChain } from '../../engine/image/backing-chain.js';
import { exportRaw } from '../../engine/image/export.js';
import { formatJson, mapEntries } from '../../engine/image/map.js';
import { GuestReader } from '../../engine/image/guest-reader.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { Qcow2FormatError, UnreadableError } from '../../engine/base/errors.js';
import { createQcow2, patchU32, patchU64, qemuImg, qemuIo, readU64, run, sha256, tempDir } from '../helpers/qemu.js';

/** Export to memory; returns the error thrown (or undefined). */
async function exportError(file: string, snapshot?: string): Promise<Error | undefined> {
  const before = sha256(file);
  try {
    const chain = await openChain(file);
    try {
      await exportRaw(chain, new MemoryIO(), snapshot === undefined ? {} : { snapshot });
    } finally {
      await chain.close();
    }
    return undefined;
  } catch (e) {
    return e as Error;
  } finally {
    expect(sha256(file)).toBe(before);
  }
}

function expectOneLine(
  e: Error | undefined,
  cls: typeof Qcow2FormatError | typeof UnreadableError,
  text: string,
): void {
  expect(e).toBeInstanceOf(cls);
  expect(e!.message).toContain(text);
  expect(e!.message).not.toContain('\n');
}

/** What qemu-img convert says about the same image (stderr), to compare wordings. */
function qemuConvertStderr(file: string, dir: string): string {
  const r = run('qemu-img', ['convert', '-O', 'raw', file, join(dir, 'q.raw')]);
  expect(r.status).toBe(1);
  return r.stderr;
}

/** A 1 MiB image, 64 KiB clusters, one data cluster at guest 0; returns L1/L2 table offsets. */
function basic(
  dir: string,
  opts: Record<string, string | number | boolean> = {},
): { f: string; l1: number; l2: number } {
  const f = join(dir, 'img.qcow2');
  createQcow2(f, '1M', opts);
  qemuIo(f, ['write -P 0x11 0 64k']);
  const l1 = Number(readU64(f, 40));
  const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
  return { f, l1, l2 };
}

describe('read path on damaged images', () => {
  it("unaligned L2 table offset in L1: QEMU's message, one line", async () => {
    const t = tempDir();
    try {
      const { f, l1 } = basic(t.dir);
      patchU64(f, l1, 0x8000000000040200n);
      const e = await exportError(f);
      expectOneLine(e, Qcow2FormatError, 'L2 table offset 0x40200 unaligned (L1 index: 0)');
      expect(qemuConvertStderr(f, t.dir)).toContain('L2 table offset 0x40200 unaligned (L1 index: 0)');
    } finally {
      t.cleanup();
    }
  });

  it("unaligned data cluster offset in L2: QEMU's message; map refuses too", async () => {
    const t = tempDir();
    try {
      const { f, l2 } = basic(t.dir);
      patchU64(f, l2, 0x8000000000050200n);
      const e = await exportError(f);
      expectOneLine(
        e,
        Qcow2FormatError,
        'Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)',
      );
      expect((e as Qcow2FormatError).field).toBe('l2_table@0x40000[0]');
      expect(qemuConvertStderr(f, t.dir)).toContain(
        'Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)',
      );
      const chain = await openChain(f);
      await expect(mapEntries(chain)).rejects.toThrow(/Cluster allocation offset 0x50200 unaligned/);
      await chain.close();
    } finally {
      t.cleanup();
    }
  });

  it('L2 table beyond the end of the file is refused (QEMU would read zeros)', async () => {
    const t = tempDir();
    try {
      const { f, l1 } = basic(t.dir);
      patchU64(f, l1, 0x8000000100000000n);
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'L2 table offset 0x100000000 beyond end of file (L1 index: 0)',
      );
    } finally {
      t.cleanup();
    }
  });

  it('data cluster past the end of a truncated file is refused', async () => {
    const t = tempDir();
    try {
      const { f } = basic(t.dir);
      qemuIo(f, ['write -P 0x22 512k 64k']);
      truncateSync(f, 0x50000 + 0x10000); // keep the first data cluster only
      expectOneLine(await exportError(f), UnreadableError, 'beyond its end of file');
    } finally {
      t.cleanup();
    }
  });

  it("extended L2: a subcluster both allocated and zero is an invalid entry (QEMU's message)", async () => {
    const t = tempDir();
    try {
      const { f, l2 } = basic(t.dir, { extended_l2: true });
      patchU64(f, l2 + 8, 0x0000000100000001n);
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'Invalid cluster entry found  (L2 offset: 0x40000, L2 index: 0)',
      );
      expect(qemuConvertStderr(f, t.dir)).toContain('Invalid cluster entry found  (L2 offset: 0x40000, L2 index: 0)');
    } finally {
      t.cleanup();
    }
  });

  it('extended L2: allocation bits on an unallocated entry are invalid', async () => {
    const t = tempDir();
    try {
      const { f, l2 } = basic(t.dir, { extended_l2: true });
      patchU64(f, l2 + 16 + 8, 0x0000000000000004n); // entry 1: no offset, alloc bit 2
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'Invalid cluster entry found  (L2 offset: 0x40000, L2 index: 0x1)',
      );
    } finally {
      t.cleanup();
    }
  });

  it('v2 image with a zero flag: QEMU\'s "pre-v3" message', async () => {
    const t = tempDir();
    try {
      const { f, l2 } = basic(t.dir, { compat: '0.10' });
      patchU64(f, l2 + 8, 1n);
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'Zero cluster entry found in pre-v3 image (L2 offset: 0x40000, L2 index: 0x1)',
      );
      expect(qemuConvertStderr(f, t.dir)).toContain(
        'Zero cluster entry found in pre-v3 image (L2 offset: 0x40000, L2 index: 0x1)',
      );
    } finally {
      t.cleanup();
    }
  });

  it('compressed cluster whose stream is garbage, or past the end of the file', async () => {
    for (const type of ['zlib', 'zstd'] as const) {
      const t = tempDir();
      try {
        const f = join(t.dir, 'img.qcow2');
        createQcow2(f, '1M', { compression_type: type });
        qemuIo(f, ['write -c -P 0x33 0 64k']);
        const l1 = Number(readU64(f, 40));
        const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
        const entry = readU64(f, l2);
        const coffset = Number(entry & ((1n << 54n) - 1n));
        patchU64(f, coffset, 0xffffffffffffffffn);
        patchU64(f, coffset + 8, 0xffffffffffffffffn);
        expectOneLine(await exportError(f), Qcow2FormatError, 'Could not decompress cluster');
        patchU64(f, l2, (entry & ~((1n << 54n) - 1n)) | 0x3fff0000n);
        expectOneLine(
          await exportError(f),
          Qcow2FormatError,
          'Compressed cluster data at 0x3fff0000 beyond end of file',
        );
      } finally {
        t.cleanup();
      }
    }
  });

  it("external data file: offset not identity-mapped (QEMU's message) and compressed entries are refused", async () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'img.qcow2');
      createQcow2(f, '4M', { data_file: join(t.dir, 'img.data') });
      qemuIo(f, ['write -P 0x44 1M 64k']);
      const l1 = Number(readU64(f, 40));
      const l2 = Number(readU64(f, l1) & 0x00fffffffffffe00n);
      patchU64(f, l2 + 16 * 8, 0x8000000000200000n);
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'External data file host cluster offset 0x200000 does not match guest cluster offset: 0x100000, L2 index: 0x10)',
      );
      expect(qemuConvertStderr(f, t.dir)).toContain(
        'External data file host cluster offset 0x200000 does not match guest cluster offset: 0x100000, L2 index: 0x10)',
      );
      patchU64(f, l2 + 16 * 8, 0x4000000000050000n);
      expectOneLine(
        await exportError(f),
        Qcow2FormatError,
        'Compressed cluster entry found in image with external data file',
      );
    } finally {
      t.cleanup();
    }
  });

  it('external data file missing, or the name extension absent', async () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'img.qcow2');
      createQcow2(f, '1M', { data_file: join(t.dir, 'img.data') });
      truncateSync(join(t.dir, 'img.data'), 0);
      run('rm', [join(t.dir, 'img.data')]);
      await expect(openChain(f)).rejects.toThrow(/^Could not open data file '.*img\.data': No such file or directory$/);
    } finally {
      t.cleanup();
    }
  });

  it('snapshots: unknown ID or name, and an absurd snapshot L1 size', async () => {
    const t = tempDir();
    try {
      const { f } = basic(t.dir);
      qemuImg('snapshot', '-c', 'snap', f);
      expectOneLine(await exportError(f, 'nope'), UnreadableError, "Can't find snapshot 'nope'");
      expect(await exportError(f, 'snap')).toBeUndefined();
      const snOff = Number(readU64(f, 64));
      patchU32(f, snOff + 8, 0x7fffffff);
      expectOneLine(await exportError(f, 'snap'), Qcow2FormatError, 'Snapshot L1 table too large');
    } finally {
      t.cleanup();
    }
  });

  it('encrypted (AES): export refused with a clear line; map equals qemu-img map given the secret', async () => {
    // Legacy AES rather than LUKS: same refusal path, and creating it takes no PBKDF calibration.
    const t = tempDir();
    try {
      const f = join(t.dir, 'enc.qcow2');
      const secret = ['--object', 'secret,id=s0,data=pw'];
      qemuImg('create', '-q', '-f', 'qcow2', ...secret, '-o', 'encrypt.format=aes,encrypt.key-secret=s0', f, '4M');
      const opts = `driver=qcow2,file.filename=${f},encrypt.key-secret=s0`;
      expect(
        run('qemu-io', [...secret, '--image-opts', '-c', 'write -P 0x55 0 128k', '-c', 'write -z 1M 64k', opts]).status,
      ).toBe(0);
      expectOneLine(await exportError(f), UnreadableError, 'is encrypted (AES, header.crypt_method = 1)');
      const chain = await openChain(f);
      const ours = formatJson(await mapEntries(chain));
      await chain.close();
      expect(ours).toBe(qemuImg('map', '--output=json', ...secret, '--image-opts', opts));
    } finally {
      t.cleanup();
    }
  });

  it('GuestReader.read over a snapshot and the active layer agree with export (random reads)', async () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'img.qcow2');
      createQcow2(f, '2M', { cluster_size: 4096, compression_type: 'zstd' });
      qemuIo(f, ['write -P 0x61 0 64k', 'write -c -P 0x62 64k 64k', 'write -z 8k 4k']);
      const raw = join(t.dir, 'q.raw');
      qemuImg('convert', '-O', 'raw', f, raw);
      const expected = (await import('node:fs')).readFileSync(raw);
      const chain = await openChain(f);
      const reader = await GuestReader.open(chain);
      for (const [off, len] of [
        [0, 1],
        [4095, 2],
        [8000, 5000],
        [65536 - 100, 300],
        [70000, 40000],
        [2 * 1024 * 1024 - 10, 100],
      ] as const) {
        const got = await reader.read(off, len);
        const want = Buffer.alloc(len);
        expected.copy(want, 0, off, Math.min(off + len, expected.length));
        expect(Buffer.from(got).equals(want), `read(${off}, ${len})`).toBe(true);
      }
      await chain.close();
    } finally {
      t.cleanup();
    }
  });
});
