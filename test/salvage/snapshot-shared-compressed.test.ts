// Salvage of a snapshot image whose active L2 entry for a compressed cluster was zeroed while the
// snapshot still maps the same stream. The refcounts of the clusters the stream touches count one
// reference no table holds any more, exactly the active disk's empty entry: it held that stream, and
// salvage reads it back, with certainty (exit 0). When the count does not prove it, the range is
// reported lost, never zeros under "nothing lost".
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-shared-comp-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const KIB = 1024;
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

interface Report {
  views: Array<{ lost: Array<{ start: number; end: number; reason: string }>; bytes: { compressed: number } }>;
  outcome: { exitCode: number };
  warnings: string[];
}

function salvage(f: string, name: string): { status: number; out: Buffer; report: Report } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  return { status: r.status, out: readFileSync(out), report: JSON.parse(readFileSync(rep, 'utf8')) as Report };
}

/** A snapshot image: compressed 0x44 at 0 and 0x45 at 4 KiB shared with snapshot s1; the active L2 copied on write. */
function build(name: string): { f: string; activeL2: number } {
  const f = join(t.dir, `${name}.qcow2`);
  createQcow2(f, '8M', { cluster_size: 4096 });
  qemuIo(f, ['write -c -P 0x44 0 4k', 'write -c -P 0x45 4k 4k', 'write -P 0x11 64k 4k']);
  qemuImg('snapshot', '-c', 's1', f);
  // A write in the same L2 range copies the active L2 table: the compressed entries stay shared.
  qemuIo(f, ['write -P 0x22 64k 4k']);
  const activeL2 = Number(readU64(f, Number(readU64(f, 40))) & OFFSET_MASK);
  return { f, activeL2 };
}

describe('salvage of a zeroed active entry whose compressed cluster a snapshot still maps', () => {
  it('reads the stream back from where the snapshot maps it: exit 0, every byte', () => {
    const { f, activeL2 } = build('one');
    writeBytes(f, activeL2, new Uint8Array(8)); // guest 0..4 KiB of the active disk
    const s = salvage(f, 'one');
    expect(s.status).toBe(0);
    expect(s.report.views[0]!.lost).toEqual([]);
    expect(s.report.warnings.join('\n')).toMatch(/lost a cluster another disk still maps/);
    expect(s.out.subarray(0, 4 * KIB).every((b) => b === 0x44)).toBe(true);
    expect(s.out.subarray(4 * KIB, 8 * KIB).every((b) => b === 0x45)).toBe(true);
    expect(s.out.subarray(64 * KIB, 68 * KIB).every((b) => b === 0x22)).toBe(true);
    expect(s.report.views[0]!.bytes.compressed).toBe(8 * KIB);
  });

  it('when the refcount counts more lost references than empty entries, the range is lost, not zeros', () => {
    const { f, activeL2 } = build('excess');
    writeBytes(f, activeL2, new Uint8Array(8));
    // Raise the refcount of the stream's first cluster (16-bit refcounts): one more lost reference
    // than there are empty entries.
    const snapTable = Number(readU64(f, 64));
    const snapL2 = Number(readU64(f, Number(readU64(f, snapTable))) & OFFSET_MASK);
    const snapEntry = readU64(f, snapL2);
    expect(snapEntry >> 62n).toBe(1n);
    const host = Number(snapEntry & ((1n << 58n) - 1n)); // 4 KiB clusters: the offset is bits 0..57
    const reftable = Number(readU64(f, 48));
    const block = Number(readU64(f, reftable));
    const at = block + Math.floor(host / 4096) * 2;
    const rc = readFileSync(f).readUInt16BE(at);
    const b = Buffer.alloc(2);
    b.writeUInt16BE(rc + 1);
    writeBytes(f, at, b);
    const s = salvage(f, 'excess');
    expect(s.status).toBe(2);
    const lost = s.report.views[0]!.lost.find((l) => l.start === 0);
    expect(lost?.reason).toMatch(/may have held it/);
    expect(s.out.subarray(64 * KIB, 68 * KIB).every((b) => b === 0x22)).toBe(true);
  });
});
