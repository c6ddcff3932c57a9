// The lost-table detector's rule on crafted cluster contents: what is a table still mapping data,
// and what is not (zeros, random bytes, text, table-like data pointing at live metadata or twice at
// the same cluster, pointers to data that something else still maps).
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { examineCluster, findLostTables, type LostTableWorld } from '../../engine/check/lost-tables.js';

const CS = 4096;
const ctx = { clusterSize: CS, fileSize: 64 * CS, extendedL2: false, refcountOrder: 4 };

/** A cluster of 64-bit big-endian entries (index → value). */
function table(entries: Record<number, bigint>): Uint8Array {
  const b = new Uint8Array(CS);
  const dv = new DataView(b.buffer);
  for (const [i, v] of Object.entries(entries)) dv.setBigUint64(8 * Number(i), v);
  return b;
}
const COPIED = 1n << 63n;
const at = (cluster: number) => BigInt(cluster * CS) | COPIED;

function world(unreferenced: number[], live: Record<number, 'l1' | 'l2' | 'metadata'> = {}, free: number[] = []) {
  const w: LostTableWorld = {
    clusterSize: CS,
    l2Entries: CS / 8,
    virtualSize: 8 * (CS / 8) * CS,
    unreferencedIn: (start, count) => unreferenced.filter((k) => k >= start && k < start + count).length,
    liveMetadataIn: (start, count) => Object.keys(live).some((k) => Number(k) >= start && Number(k) < start + count),
    liveRole: (k) => live[k],
    freeL1Slots: free,
  };
  return w;
}

describe('lost-table detector', () => {
  it('zeros, random bytes and text are not tables', () => {
    expect(examineCluster(new Uint8Array(CS), 10, ctx)).toBeUndefined();
    expect(examineCluster(randomBytes(CS), 10, ctx)).toBeUndefined();
    expect(examineCluster(new TextEncoder().encode('hello world, '.repeat(400)).slice(0, CS), 10, ctx)).toBeUndefined();
  });

  it('an L2 table mapping unreferenced data is lost; placed in the only free slot', () => {
    const e = examineCluster(table({ 0: at(11), 1: at(12), 7: at(13) }), 10, ctx)!;
    const found = findLostTables([e], world([10, 11, 12, 13], {}, [3]));
    expect(found).toEqual([
      {
        kind: 'l2',
        cluster: 10,
        dataClusters: 3,
        unreferencedDataClusters: 3,
        compressedEntries: 0,
        dataRanges: [{ start: 11, count: 3 }],
        l1Index: 3,
        guestStart: 3 * (CS / 8) * CS,
        guestLength: (CS / 8) * CS,
        placedBy: 'only-free-slot',
      },
    ]);
  });

  it('table-like data is not a table when it points at live metadata, twice at one cluster, or only at mapped data', () => {
    const live = examineCluster(table({ 0: at(3), 1: at(11) }), 10, ctx)!;
    expect(findLostTables([live], world([11], { 3: 'metadata' }))).toEqual([]);
    const twice = examineCluster(table({ 0: at(11), 1: at(11) }), 10, ctx)!;
    expect(findLostTables([twice], world([11]))).toEqual([]);
    const mapped = examineCluster(table({ 0: at(11) }), 10, ctx)!;
    expect(findLostTables([mapped], world([]))).toEqual([]);
    // Unaligned or past the end of the file: not even a candidate.
    expect(examineCluster(table({ 0: BigInt(11 * CS + 512) }), 10, ctx)).toBeUndefined();
    expect(examineCluster(table({ 0: BigInt(100 * CS) }), 10, ctx)).toBeUndefined();
  });

  it('an L1 table over lost L2 tables is lost too, and places them by its slots', () => {
    const l2a = examineCluster(table({ 0: at(21) }), 20, ctx)!;
    const l2b = examineCluster(table({ 0: at(23), 1: at(24) }), 22, ctx)!;
    const l1 = examineCluster(table({ 1: at(20), 4: at(22), 5: at(30) }), 19, ctx)!;
    const found = findLostTables([l1, l2a, l2b], world([19, 20, 21, 22, 23, 24], { 30: 'l2' }));
    expect(found.map((t) => [t.kind, t.cluster, t.l1Index, t.placedBy])).toEqual([
      ['l1', 19, undefined, undefined],
      ['l2', 20, 1, 'lost-l1'],
      ['l2', 22, 4, 'lost-l1'],
    ]);
    expect(found[0]).toMatchObject({
      l2Tables: 3,
      dataClusters: 3,
      dataRanges: [
        { start: 21, count: 1 },
        { start: 23, count: 2 },
      ],
    });
  });
});
