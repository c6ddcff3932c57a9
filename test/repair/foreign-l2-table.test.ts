// An active L2 table overwritten with another structure's content (a refcount block, the L1 table,
// another L2 table): what it mapped before cannot be told, so `-r all` names its whole guest span in
// guest-ranges-lost — never an exit 0 that leaves data differing outside the ranges it names. Real
// qemu-img images damaged at precise bytes; QEMU's reader judges what the guest reads.
import { afterAll, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import {
  createQcow2,
  patchU16,
  qemuCheck,
  qemuImg,
  qemuIo,
  readBytes,
  readU64,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';
import { readsBack, caseFiles, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-foreign-l2-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 4096;
const SPAN = (CS / 8) * CS; // guest bytes one L2 table maps: 2 MiB
const l1Offset = (f: string): number => Number(readU64(f, 40));
const l2Of = (f: string, slot: number): number => Number(readU64(f, l1Offset(f) + slot * 8) & 0x00fffffffffffe00n);

function repairAllLost(f: string): { status: number; stderr: string; lost: Array<{ start: number; length: number }> } {
  const r = repairAll(f);
  return { ...r, lost: r.out['guest-ranges-lost'] as Array<{ start: number; length: number }> };
}

/** Three L2 tables (slots 0, 1, 2) with data; returns the image. */
function threeSlots(name: string): string {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: CS, refcount_bits: 16 });
  qemuIo(f, [
    'write -P 0x11 0 64k',
    `write -P 0x22 ${SPAN} 8k`,
    `write -P 0x23 ${SPAN + 0x40000} 12k`,
    `write -P 0x33 ${2 * SPAN} 16k`,
  ]);
  return f;
}

describe('an L2 table overwritten by another structure: its whole span is named lost', () => {
  it('by a refcount block: the span is named, not only the entries that are dropped', () => {
    const f = threeSlots('by-refblock');
    const refblock = Number(readU64(f, Number(readU64(f, 48))));
    writeBytes(f, l2Of(f, 1), readBytes(f, refblock, CS));
    const r = repairAllLost(f);
    expect(r.stderr).toMatch(/the L2 table at 0x[0-9a-f]+ holds the content of a refcount block/);
    expect(r.lost).toContainEqual({ start: SPAN, length: SPAN });
    // The span's data is gone (it reads zeros now); the other spans are untouched and not named.
    expect(readsBack(f, 0, SPAN + 0x40000, 12288)).toBe(true);
    expect(r.lost.some((x) => x.start < SPAN || x.start >= 2 * SPAN)).toBe(false);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0x33, 2 * SPAN, 16384)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('by the L1 table: pointers into tables are no mapping, the span is named', () => {
    const f = threeSlots('by-l1');
    writeBytes(f, l2Of(f, 1), readBytes(f, l1Offset(f), CS));
    const r = repairAllLost(f);
    expect(r.stderr).toMatch(/holds pointers into other tables \(3 of its 3 mappings\)/);
    expect(r.lost).toContainEqual({ start: SPAN, length: SPAN });
    expect(r.lost.some((x) => x.start < SPAN || x.start >= 2 * SPAN)).toBe(false);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0x33, 2 * SPAN, 16384)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('by another L2 table: which of the two is the copy cannot be told, both spans are named', () => {
    const f = threeSlots('by-l2');
    writeBytes(f, l2Of(f, 1), readBytes(f, l2Of(f, 0), CS));
    const r = repairAllLost(f);
    expect(r.stderr).toMatch(/holds the same entries as the L2 table at/);
    expect(r.lost).toEqual([{ start: 0, length: 2 * SPAN }]);
    // The copy reads slot 0's data where guest 2 MiB had its own; slot 0 itself still reads right.
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0x33, 2 * SPAN, 16384)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it("by the snapshot's table at the same slot: the active disk's own changes are lost, its span is named", () => {
    const f = fileIn('by-snapshot-l2');
    createQcow2(f, '16M', { cluster_size: CS, refcount_bits: 16 });
    qemuIo(f, ['write -P 0x11 0 64k', `write -P 0x33 ${2 * SPAN} 16k`]);
    qemuImg('snapshot', '-c', 's1', f);
    const snapshotTable = l2Of(f, 0);
    qemuIo(f, ['write -P 0x22 128k 8k']); // copy on write: the active disk gets a table of its own
    expect(l2Of(f, 0)).not.toBe(snapshotTable);
    writeBytes(f, l2Of(f, 0), readBytes(f, snapshotTable, CS));
    expect(qemuCheck(f).status).toBe(3); // QEMU sees only the leaked cluster of the active disk's write
    const r = repairAllLost(f);
    expect(r.stderr).toMatch(/holds the same entries as the snapshot L2 table at 0x[0-9a-f]+ at the same slot/);
    expect(r.lost).toEqual([{ start: 0, length: SPAN }]);
    expect(readsBack(f, 0x11, 0, 65536)).toBe(true);
    expect(readsBack(f, 0x33, 2 * SPAN, 16384)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('an intact image with several L2 tables, or with a snapshot and a leak, names nothing', () => {
    const f = threeSlots('intact');
    const r = repairAllLost(f);
    expect(r.status).toBe(0);
    expect(r.lost).toEqual([]);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 0x44 128k 8k']);
    // A leaked cluster that holds data, at the end of the file.
    const size = statSync(f).size;
    writeBytes(f, size, new Uint8Array(CS).fill(0x55));
    patchU16(f, Number(readU64(f, Number(readU64(f, 48)))) + 2 * (size / CS), 1);
    expect(qemuCheck(f).status).toBe(3);
    expect(repairAllLost(f).lost).toEqual([]);
    expect(readsBack(f, 0x44, 128 * 1024, 8192)).toBe(true);
  });
});
