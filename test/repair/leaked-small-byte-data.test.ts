// Regression tests for one class the differential campaign found: guest data made of small repeated
// bytes (0x02 0x02 …, 0x0a 0x0a …) orphaned by a zeroed L2 table was taken for a stale refcount block
// (its 16-bit words read as small refcounts), so the check said "leaks only, no harm to data" and
// `-r leaks` / `-r all` freed it and exited 0. A refcount block of the image must be able to count
// the file: no entry past its end, no count above what the image's users can reach.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isStaleRefcountBlock } from '../../engine/check/stale-refcount-block.js';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readU64, run, tempDir, writeBytes } from '../helpers/qemu.js';
import { readsBack, caseFiles } from '../helpers/guest-reads.js';

const t = tempDir('q2d-small-byte-data-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
const fileIn = caseFiles(t.dir);

const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

function json(args: string[]): { status: number; stderr: string; out: Record<string, unknown> } {
  const r = cli(...args);
  return { status: r.status, stderr: r.stderr, out: JSON.parse(r.stdout) as Record<string, unknown> };
}

type Anomaly = { kind: string; firstCluster?: number; count: number; explanation: string };
const anomalies = (out: Record<string, unknown>): Anomaly[] => (out.anomalies as Anomaly[]) ?? [];

/** The data clusters an L2 table maps (standard entries), read before the table is damaged. */
function mappedClusters(f: string, l2: number, entries: number, cs: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < entries; i++) {
    const off = tableOf(readU64(f, l2 + 8 * i));
    if (off) out.push(off / cs);
  }
  return out;
}

describe('small repeated bytes orphaned by a zeroed L2 table are data, not a stale refcount block', () => {
  it('512-byte clusters, 0x02 bytes: check reports orphaned data, -r leaks keeps it, -r all exits 4', () => {
    const f = fileIn('c512-0x02');
    createQcow2(f, '8M', { cluster_size: 512 });
    qemuIo(f, ['write -P 0x11 0 1k', 'write -P 0x02 5M 1k']);
    const l1 = Number(readU64(f, 40));
    const l2 = tableOf(readU64(f, l1 + 8 * Math.floor((5 << 20) / (64 * 512))));
    const lost = mappedClusters(f, l2, 64, 512);
    expect(lost.length).toBe(2);
    writeBytes(f, l2, Buffer.alloc(512)); // the L2 table zeroed: guest 5 MiB..5 MiB+1 KiB lost
    expect(qemuCheck(f).status).toBe(3); // QEMU: "leaks only, no harm to data"

    const check = json(['check', '--output=json', f]);
    expect(check.status).toBe(3); // QEMU's counters and exit code stay QEMU's
    const orphaned = anomalies(check.out).filter((a) => a.kind === 'orphaned-data');
    expect(orphaned.map((a) => a.firstCluster)).toEqual([lost[0]]);
    expect(orphaned[0]?.count).toBe(2);
    const leak = anomalies(check.out).find((a) => a.kind === 'leaked-cluster');
    expect(leak?.explanation).toMatch(/still hold data that no table maps/);

    const copy = join(t.dir, 'c512-0x02-leaks.qcow2');
    run('cp', [f, copy]);
    const leaks = json(['check', '-r', 'leaks', '--no-journal', '--output=json', copy]);
    expect(leaks.status, leaks.stderr).toBe(3);
    expect(leaks.stderr).toMatch(/refused to free 2 leaked cluster\(s\) that still hold data/);
    const kept = readFileSync(copy);
    for (const c of lost) expect(kept.subarray(c * 512, (c + 1) * 512).every((b) => b === 0x02)).toBe(true);

    const all = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(all.status, all.stderr).toBe(4); // clean, but not its data
    expect(all.out['guest-data-lost-unplaced']).toEqual({ clusters: 2, bytes: 1024 });
    expect(qemuCheck(f).status).toBe(0);
    expect(readsBack(f, 0x11, 0, 1024)).toBe(true);
  });

  it('4 KiB clusters with a snapshot and compressed data, 0x0a bytes: the same, whatever the snapshot count', () => {
    const f = fileIn('c4096-snap-0x0a');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -c -P 0x22 1M 4k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x0a 6M 12k']); // the active L2 table of 6 MiB is the active's own
    const l1 = Number(readU64(f, 40));
    const l2 = tableOf(readU64(f, l1 + 8 * 3)); // 6 MiB: L1 slot 3 (2 MiB per L2 table)
    const lost = mappedClusters(f, l2, 512, 4096);
    expect(lost.length).toBe(3);
    writeBytes(f, l2, Buffer.alloc(4096));
    expect(qemuCheck(f).status).toBe(3);

    const check = json(['check', '--output=json', f]);
    expect(check.status).toBe(3);
    const orphaned = anomalies(check.out).filter((a) => a.kind === 'orphaned-data');
    expect(orphaned.some((a) => a.firstCluster === lost[0] && a.count === 3)).toBe(true);

    const copy = join(t.dir, 'c4096-snap-0x0a-leaks.qcow2');
    run('cp', [f, copy]);
    const leaks = cli('check', '-r', 'leaks', '--no-journal', copy);
    expect(leaks.status, leaks.stderr).toBe(3);
    const all = json(['check', '-r', 'all', '--no-journal', '--output=json', f]);
    expect(all.status, all.stderr).toBe(4);
    expect(all.out['guest-data-lost-unplaced']).toEqual({ clusters: 3, bytes: 3 * 4096 });
    expect(readsBack(f, 0x22, 1 << 20, 4096)).toBe(true);
  });

  it('a real refcount block of an image still reads as one; the same words past the file do not', () => {
    const f = fileIn('real-refblock');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 64k']);
    qemuImg('snapshot', '-c', 's1', f);
    const bytes = readFileSync(f);
    const reftable = Number(readU64(f, 48));
    const block = Number(readU64(f, reftable));
    const content = new Uint8Array(bytes.subarray(block, block + 4096));
    const ctx = { clusterSize: 4096, fileSize: bytes.length, extendedL2: false, refcountOrder: 4, snapshots: 1 };
    expect(isStaleRefcountBlock(content, ctx)).toBe(true);
    // The same block in a file too short for its last counted cluster cannot be this file's.
    expect(isStaleRefcountBlock(content, { ...ctx, fileSize: 4096 * 4 })).toBe(false);
    // Uniform 0x0a0a words: 2570 users of every cluster, in an image with one snapshot.
    expect(isStaleRefcountBlock(new Uint8Array(4096).fill(0x0a), { ...ctx, fileSize: 64 << 20 })).toBe(false);
  });
});
