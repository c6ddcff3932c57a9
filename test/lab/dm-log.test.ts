// The dm-log-writes reader on a log written by real QEMU (blklogwrites), and on hostile logs:
// every refusal is one line naming the field and its value.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { encodeDmLog, readDmLog } from '../../engine/lab/dm-log.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-dmlog-');
afterAll(t.cleanup);

function qemuLog(): Uint8Array {
  const disk = join(t.dir, 'disk.qcow2');
  const log = join(t.dir, 'log.bin');
  createQcow2(disk, '8M', { cluster_size: 4096 });
  qemuImg('create', '-q', '-f', 'raw', log, '16M');
  const opts = `driver=qcow2,file.driver=blklogwrites,file.file.filename=${disk},file.log.filename=${log}`;
  const r = run('qemu-io', [
    '--image-opts',
    ...['write -P 0x11 0 64k', 'flush', 'discard 0 8k', 'write -z 1M 8k', 'write -P 0x22 2M 4k'].flatMap((c) => [
      '-c',
      c,
    ]),
    opts,
  ]);
  expect(r.status, r.stderr).toBe(0);
  return new Uint8Array(readFileSync(log));
}

const bytes = qemuLog();

async function refusal(mutate: (b: Buffer) => void): Promise<string> {
  const b = Buffer.from(bytes);
  mutate(b);
  try {
    await readDmLog(new MemoryIO(b));
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('the hostile log was accepted');
}

describe('dm-log-writes reader', () => {
  it('reads what QEMU logged: writes with their data, flushes, a discard without data', async () => {
    const dm = await readDmLog(new MemoryIO(bytes));
    expect(dm.sectorSize).toBe(512);
    expect(dm.entries).toBe(Number(Buffer.from(bytes).readBigUInt64LE(16)));
    expect(dm.log.length).toBe(dm.entries);
    const kinds = new Set(dm.log.map((e) => e.kind));
    expect([...kinds].sort()).toEqual(['discard', 'flush', 'write']);
    // QEMU flushes between dependent metadata writes on its own: more flushes than the one asked for.
    expect(dm.log.filter((e) => e.kind === 'flush').length).toBeGreaterThan(1);
    // The guest's 64 KiB of 0x11 is in one write, whole; the discard carries no data.
    const data = dm.log.find((e) => e.kind === 'write' && e.data.length === 65536 && e.data.every((x) => x === 0x11));
    expect(data).toBeDefined();
    const discard = dm.log.find((e) => e.kind === 'discard');
    expect(discard).toMatchObject({ length: 8192 });
    // Every entry after the discard is still read in step: the later 0x22 write is found whole.
    const at = dm.log.indexOf(discard!);
    const later = dm.log.findIndex(
      (e, i) => i > at && e.kind === 'write' && e.data.length === 4096 && e.data.every((x) => x === 0x22),
    );
    expect(later).toBeGreaterThan(at);
  });

  it('writes the same log back: encode, read, equal', async () => {
    const dm = await readDmLog(new MemoryIO(bytes));
    const again = await readDmLog(new MemoryIO(encodeDmLog(dm.log)));
    expect(again.log).toEqual(dm.log);
    const file = join(t.dir, 'again.bin');
    writeFileSync(file, encodeDmLog(dm.log));
    expect(readFileSync(file).readBigUInt64LE(0)).toBe(0x6a736677736872n);
  });

  it('refuses hostile logs in one line naming the field and value', async () => {
    const cases: Array<[(b: Buffer) => void, RegExp]> = [
      [(b) => b.writeBigUInt64LE(0x1234n, 0), /bad magic \(superblock\.magic = 0x1234\)/],
      [(b) => b.writeBigUInt64LE(2n, 8), /unsupported version \(superblock\.version = 2\)/],
      [(b) => b.writeUInt32LE(1000, 24), /superblock\.sectorsize = 1000/],
      [(b) => b.writeUInt32LE(0, 24), /superblock\.sectorsize = 0/],
      [(b) => b.writeBigUInt64LE(1n << 40n, 16), /superblock\.nr_entries = 1099511627776/],
      [(b) => b.writeBigUInt64LE(0x40n, 512 + 16), /unknown entry flags \(entry\[0\]\.flags = 0x40\)/],
      [
        (b) => b.writeBigUInt64LE(1n << 30n, 512 + 8),
        /data past the end of the file .*entry\[0\]\.nr_sectors = 1073741824/,
      ],
      [(b) => b.writeBigUInt64LE(1n << 60n, 512), /range beyond 4 PiB \(entry\[0\]\.sector = /],
    ];
    for (const [mutate, want] of cases) {
      const msg = await refusal(mutate);
      expect(msg).toMatch(want);
      expect(msg.split('\n')).toHaveLength(1);
    }
    await expect(readDmLog(new MemoryIO(bytes.subarray(0, 100)))).rejects.toThrow(/log\.size = 100/);
    await expect(readDmLog(new MemoryIO(bytes), { maxDataBytes: 4096 })).rejects.toThrow(/write data beyond 4096/);
  });
});
