// Salvage of an image cut short inside or before its active L1 table. The header survives and names
// the L1; the entries the file no longer holds may each have named an L2 table, so their guest
// ranges are lost (named, exit 2), never written as zeros under "nothing lost". Entries the file
// still holds keep placing tables, and those pointing past the end name their ranges lost too.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-truncated-l1-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const KIB = 1024;
const MIB = 1024 * KIB;

interface Report {
  views: Array<{ lost: Array<{ start: number; end: number; reason: string }>; bytes: { lost: number } }>;
  outcome: { exitCode: number; words: string };
  warnings: string[];
}

function salvage(f: string, name: string): { status: number; out: Buffer; report: Report; stdout: string } {
  const out = join(t.dir, `${name}.raw`);
  const rep = join(t.dir, `${name}.json`);
  const r = run('node', [CLI, 'salvage', f, out, '--report', rep]);
  return {
    status: r.status,
    stdout: r.stdout,
    out: readFileSync(out),
    report: JSON.parse(readFileSync(rep, 'utf8')) as Report,
  };
}

const covered = (lost: Report['views'][0]['lost'], start: number, end: number): boolean =>
  lost.some((l) => l.start <= start && l.end >= end);

describe('salvage of an image truncated before its L1 table', () => {
  it('64 KiB clusters, the file cut to 2 clusters: the whole disk is named lost, exit 2', () => {
    const f = join(t.dir, 'cut2.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 40M 128k']);
    const l1 = Number(readU64(f, 40));
    expect(l1).toBeGreaterThanOrEqual(2 * 65536);
    truncateSync(f, 2 * 65536);
    const s = salvage(f, 'cut2');
    expect(s.status).toBe(2);
    expect(s.stdout).not.toMatch(/nothing lost/);
    const v = s.report.views[0]!;
    expect(covered(v.lost, 0, 64 * MIB)).toBe(true);
    expect(v.lost[0]!.reason).toMatch(/L1 entry beyond end of file \(truncated\)/);
    expect(v.bytes.lost).toBe(64 * MIB);
    expect(s.report.warnings.join('\n')).toMatch(
      /the file ends before the active L1 table at 0x[0-9a-f]+ \(truncated\)/,
    );
  });
});

describe('salvage of an image truncated inside its L1 table', () => {
  it('512-byte clusters: the slots cut off and the tables past the end are named lost, exit 2', () => {
    const f = join(t.dir, 'cutl1.qcow2');
    // 512-byte clusters: an L2 table maps 32 KiB; the 8 MiB disk needs 256 L1 entries, 4 clusters.
    createQcow2(f, '8M', { cluster_size: 512 });
    qemuIo(f, ['write -P 0x11 100k 2k', 'write -P 0x22 5M 2k']);
    const l1 = Number(readU64(f, 40));
    // Keep the L1's first cluster (slots 0..63: guest 0..2 MiB), cut the rest and everything after.
    truncateSync(f, l1 + 512);
    const s = salvage(f, 'cutl1');
    expect(s.status).toBe(2);
    const v = s.report.views[0]!;
    // Slot 3 (guest 96..128 KiB): its entry survives, its table is past the end.
    const slot3 = v.lost.find((l) => l.start <= 100 * KIB && l.end >= 102 * KIB);
    expect(slot3?.reason).toMatch(/L2 table beyond end of file \(truncated\)/);
    // Everything from 2 MiB: the entries themselves are gone.
    expect(covered(v.lost, 2 * MIB, 8 * MIB)).toBe(true);
    expect(v.lost.find((l) => l.start <= 5 * MIB && l.end > 5 * MIB)?.reason).toMatch(/L1 entry beyond end of file/);
    // Slots whose entries survive and were never allocated are not named.
    expect(covered(v.lost, 0, 32 * KIB)).toBe(false);
  });
});
