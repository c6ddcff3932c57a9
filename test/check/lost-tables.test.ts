// Lost tables: with L1 entries zeroed, the L2 tables and their data still sit in the file. QEMU
// counts them as leaks (and our counters stay QEMU's), but our anomalies call them lost tables
// with the data they map, and the guest range where it is certain. Genuine leaks are not tables.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Anomaly } from '../../engine/contract/findings.js';
import { lostTablesParagraph, plainVerdict } from '../../engine/contract/verdict.js';
import { createQcow2, patchU16, patchU64, qemuCheck, qemuIo, readU64, tempDir, writeBytes } from '../helpers/qemu.js';
import { ourCheck } from './harness.js';

const tmp = tempDir('q2d-lost-');
afterAll(() => tmp.cleanup());

const MiB = 1024 * 1024;
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

function l1Offset(file: string): number {
  return Number(readU64(file, 40));
}

function l2OffsetOf(file: string, slot: number): number {
  return Number(readU64(file, l1Offset(file) + 8 * slot) & OFFSET_MASK);
}

/** The host offset of the data cluster that maps guest offset `guest`. */
function dataOffsetOf(file: string, guest: number, clusterSize: number): number {
  const l2Entries = clusterSize / 8;
  const slot = Math.floor(guest / (l2Entries * clusterSize));
  const index = Math.floor(guest / clusterSize) % l2Entries;
  return Number(readU64(file, l2OffsetOf(file, slot) + 8 * index) & OFFSET_MASK);
}

async function checkBoth(file: string) {
  const q = qemuCheck(file);
  const ours = await ourCheck(file);
  const r = ours.result!;
  // QEMU's counters stay exactly QEMU's: the lost tables' clusters are counted as leaks.
  expect(r.counters.leaks).toBe(q.json!.leaks ?? 0);
  expect(r.counters.corruptions).toBe(q.json!.corruptions ?? 0);
  expect(ours.exit).toBe(q.status);
  const lost = r.anomalies.filter((a) => a.kind === 'lost-table');
  return { q, r, lost };
}

function noLeakSaysNothingLost(anomalies: Anomaly[]): void {
  for (const a of anomalies.filter((x) => x.kind === 'leaked-cluster')) expect(a.fix).not.toContain('no data is lost');
}

describe('lost tables (64 KiB clusters: one L2 table maps 512 MiB)', () => {
  const base = join(tmp.dir, 'base64k.qcow2');
  createQcow2(base, '2G');
  // One write in each of the four L1 slots: 16, 4, 1 and 8 data clusters.
  qemuIo(base, [
    'write -P 0x11 0 1M',
    'write -P 0x22 600M 256k',
    'write -P 0x33 1100M 64k',
    'write -P 0x44 1600M 512k',
  ]);

  it('active L1 zeroed: four lost L2 tables with their data, place unknown, leaks as QEMU counts them', async () => {
    const f = join(tmp.dir, 'l1-zeroed.qcow2');
    copyFileSync(base, f);
    const l2s = [0, 1, 2, 3].map((slot) => l2OffsetOf(f, slot));
    writeBytes(f, l1Offset(f), new Uint8Array(32));
    const { q, r, lost } = await checkBoth(f);
    expect(q.json!.leaks).toBe(33); // 4 tables + 29 data clusters
    expect(lost.map((a) => a.firstCluster! * 65536)).toEqual(l2s);
    expect(lost.map((a) => a.lostTable!.dataClusters)).toEqual([16, 4, 1, 8]);
    expect(lost.map((a) => a.lostTable!.unreferencedDataClusters)).toEqual([16, 4, 1, 8]);
    expect(lost[0]!.lostTable!.dataRanges).toEqual([{ start: dataOffsetOf(base, 0, 65536) / 65536, count: 16 }]);
    // Four tables, four free slots: no place is certain.
    for (const a of lost) {
      expect(a.severity).toBe('error');
      expect(a.lostTable!.guestStart).toBeUndefined();
    }
    noLeakSaysNothingLost(r.anomalies);
    const v = plainVerdict({ counters: r.counters, anomalies: r.anomalies });
    expect(v.state).toBe('lost-tables');
    expect(v.word).toBe('corrupt');
    expect(v.exitCode).toBe(3);
    expect(v.sentences.join(' ')).toContain('Do not repair leaks');
    expect(v.sentences.join(' ')).not.toContain('no harm to your data');
    expect(lostTablesParagraph(r.anomalies)).toContain('4 lost L2 tables still map 1.8 MiB of data');
  });

  it('one L1 entry zeroed: the lost table is placed in the only free slot, with its guest range', async () => {
    const f = join(tmp.dir, 'l1-one.qcow2');
    copyFileSync(base, f);
    const l2 = l2OffsetOf(f, 2);
    patchU64(f, l1Offset(f) + 16, 0n);
    const { q, lost } = await checkBoth(f);
    expect(q.json!.leaks).toBe(2);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.firstCluster! * 65536).toBe(l2);
    expect(lost[0]!.lostTable).toMatchObject({
      table: 'l2',
      dataClusters: 1,
      l1Index: 2,
      guestStart: 1024 * MiB,
      guestLength: 512 * MiB,
      placedBy: 'only-free-slot',
    });
  });

  it('a clean image reports no lost table', async () => {
    const { r, lost } = await checkBoth(base);
    expect(lost).toHaveLength(0);
    expect(plainVerdict({ counters: r.counters, anomalies: r.anomalies }).state).toBe('clean');
  });

  it('genuine leaks (guest data of every look, a refcount bumped) are not lost tables; the one holding data is orphaned data', async () => {
    const f = join(tmp.dir, 'genuine-leaks.qcow2');
    createQcow2(f, '1G');
    qemuIo(f, ['write -P 0x5a 0 64k', 'write -P 0 64k 64k', 'write -P 0x77 128k 64k', 'write -P 0x66 192k 64k']);
    // Guest data that looks like a table entry pointing at the live L1 table.
    const tableLike = new Uint8Array(65536);
    new DataView(tableLike.buffer).setBigUint64(0, BigInt(l1Offset(f)) | (1n << 63n));
    qemuIo(f, ['write -P 0x01 256k 64k']);
    writeBytes(f, dataOffsetOf(f, 256 * 1024, 65536), tableLike);
    // Crash-like: the L2 entries of three clusters cleared (their data leaked), one of them with its
    // refcount bumped as an interrupted allocation leaves it.
    const zerosCluster = dataOffsetOf(f, 64 * 1024, 65536) / 65536;
    const l2 = l2OffsetOf(f, 0);
    for (const index of [0, 1, 4]) patchU64(f, l2 + 8 * index, 0n);
    const refblock = Number(readU64(f, Number(readU64(f, 48))));
    patchU16(f, refblock + 2 * zerosCluster, 2);
    const { q, r, lost } = await checkBoth(f);
    expect(q.json!.leaks).toBe(3);
    expect(lost).toHaveLength(0);
    // The leaked cluster that still holds guest data (0x5a) is orphaned data, not a harmless leak;
    // the one of zeros stays a plain leak.
    expect(r.anomalies.filter((a) => a.kind === 'orphaned-data').map((a) => a.count)).toEqual([1]);
    expect(r.anomalies.some((a) => a.kind === 'leaked-cluster' && a.fix.includes('no data is lost'))).toBe(true);
    expect(plainVerdict({ counters: r.counters, anomalies: r.anomalies }).state).toBe('data-at-risk');
  });
});

describe('lost tables (4 KiB clusters: one L2 table maps 2 MiB)', () => {
  const base = join(tmp.dir, 'base4k.qcow2');
  createQcow2(base, '16M', { cluster_size: 4096 });
  // Slots 0..7, each with (slot + 1) data clusters.
  qemuIo(
    base,
    [0, 1, 2, 3, 4, 5, 6, 7].map((s) => `write -P ${s + 1} ${s * 2 * MiB + 8192} ${(s + 1) * 4096}`),
  );

  it('active L1 zeroed: eight lost L2 tables with their data clusters', async () => {
    const f = join(tmp.dir, 'l1-zeroed-4k.qcow2');
    copyFileSync(base, f);
    writeBytes(f, l1Offset(f), new Uint8Array(64));
    const { q, r, lost } = await checkBoth(f);
    expect(q.json!.leaks).toBe(8 + 36);
    expect(lost.map((a) => a.lostTable!.dataClusters).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    noLeakSaysNothingLost(r.anomalies);
  });

  it('one L1 entry zeroed: placed in slot 5, guest range 10 MiB..12 MiB', async () => {
    const f = join(tmp.dir, 'l1-one-4k.qcow2');
    copyFileSync(base, f);
    patchU64(f, l1Offset(f) + 8 * 5, 0n);
    const { lost } = await checkBoth(f);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.lostTable).toMatchObject({
      dataClusters: 6,
      l1Index: 5,
      guestStart: 10 * MiB,
      guestLength: 2 * MiB,
    });
  });

  it('lost with refcount 0 (QEMU sees nothing wrong): still a lost table, placed in slot 5', async () => {
    const f = join(tmp.dir, 'l1-one-freed-4k.qcow2');
    copyFileSync(base, f);
    const l2 = l2OffsetOf(f, 5);
    const data = [0, 1, 2, 3, 4, 5].map((i) => dataOffsetOf(f, 10 * MiB + 8192 + i * 4096, 4096));
    patchU64(f, l1Offset(f) + 8 * 5, 0n);
    const refblock = Number(readU64(f, Number(readU64(f, 48))));
    for (const off of [l2, ...data]) patchU16(f, refblock + 2 * (off / 4096), 0);
    const { q, r, lost } = await checkBoth(f);
    expect(q.status).toBe(0);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.lostTable).toMatchObject({ dataClusters: 6, unreferencedDataClusters: 6, l1Index: 5 });
    const v = plainVerdict({ counters: r.counters, anomalies: r.anomalies });
    expect(v.state).toBe('lost-tables');
    expect(v.exitCode).toBe(0);
  });
});
