// A bit flip that clears the compressed flag (bit 62) of a compressed L2 entry leaves a standard
// entry with reserved bits (the stream's low offset bits and sector count) that maps a cluster of
// compressed streams as raw data. Clearing the reserved bits would keep that wrong mapping and call
// the range fine; -r all sets the flag back when the stream there inflates to a whole cluster, and
// the guest reads its own data again. A standard entry with a flipped reserved bit is still only cleared.
import { afterAll, describe, expect, it } from 'vitest';
import { createQcow2, patchU64, qemuCheck, qemuIo, readU64, tempDir, writeBytes } from '../helpers/qemu.js';
import { caseFiles, readsBack, repairAll } from '../helpers/guest-reads.js';

const t = tempDir('q2d-compressed-flag-lost-');
afterAll(t.cleanup);
const fileIn = caseFiles(t.dir);

const CS = 65536;
const COMPRESSED = 1n << 62n;
const STD_RESERVED = 0x3f000000000001fen;
const l2Of = (f: string): number => Number(readU64(f, Number(readU64(f, 40))) & 0x00fffffffffffe00n);
const PATTERNS = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66];

/** Six compressed guest clusters, patterns 0x11..0x66, packed by QEMU into shared host clusters. */
function compressedImage(name: string): string {
  const f = fileIn(name);
  createQcow2(f, '16M', { cluster_size: CS });
  qemuIo(
    f,
    PATTERNS.map((p, i) => `write -c -P 0x${p.toString(16)} ${i * CS} ${CS}`),
  );
  return f;
}

describe('a compressed L2 entry that lost its compressed flag', () => {
  it('-r all restores the flag (the stream inflates), exits 0, and every cluster reads its own data', () => {
    const f = compressedImage('flag-lost');
    const l2 = l2Of(f);
    // The first entry whose standard reading has reserved bits: a stream not at a sector boundary.
    const i = PATTERNS.findIndex((_, k) => (readU64(f, l2 + 8 * k) & ~COMPRESSED & STD_RESERVED) !== 0n);
    expect(i).toBeGreaterThanOrEqual(0);
    const entry = readU64(f, l2 + 8 * i);
    expect(entry & COMPRESSED).toBe(COMPRESSED);
    patchU64(f, l2 + 8 * i, entry & ~COMPRESSED);
    expect(readsBack(f, PATTERNS[i]!, i * CS, CS)).toBe(false); // QEMU now reads compressed bytes as raw data
    expect(qemuCheck(f).status).toBe(2); // reserved bits
    const r = repairAll(f);
    expect(r.stderr).toMatch(/with the compressed flag set back it is a compressed stream .* flag restored/);
    expect(r.stderr).not.toMatch(/reserved bits cleared/);
    expect(r.out['guest-ranges-lost']).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
    expect(readU64(f, l2 + 8 * i)).toBe(entry);
    for (const [k, p] of PATTERNS.entries()) expect(readsBack(f, p, k * CS, CS), `cluster ${k}`).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('when its stream no longer inflates, the range it reads from a cluster of streams (raw, or as zeros) is named lost (exit 4)', () => {
    const f = compressedImage('flag-lost-stream-broken');
    const l2 = l2Of(f);
    const i = PATTERNS.findIndex((_, k) => (readU64(f, l2 + 8 * k) & ~COMPRESSED & STD_RESERVED) !== 0n);
    expect(i).toBeGreaterThanOrEqual(0);
    const entry = readU64(f, l2 + 8 * i);
    const stream = Number(entry & ((1n << 54n) - 1n)); // 64 KiB clusters: the stream offset is bits 0..53
    writeBytes(f, stream, new Uint8Array(16).fill(0xff)); // a deflate block of reserved type: nothing inflates
    patchU64(f, l2 + 8 * i, entry & ~COMPRESSED);
    const r = repairAll(f);
    expect(r.stderr).toMatch(/holds other entries' compressed streams, as (raw data|zeros) .* named lost/);
    expect(r.out['guest-ranges-lost']).toEqual([{ start: i * CS, length: CS }]);
    expect(r.status, r.stderr).toBe(4);
    for (const [k, p] of PATTERNS.entries())
      if (k !== i) expect(readsBack(f, p, k * CS, CS), `cluster ${k}`).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('a standard data entry with a flipped reserved bit is not taken for a compressed one: bits cleared, data kept', () => {
    const f = fileIn('std-reserved');
    createQcow2(f, '16M', { cluster_size: CS });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = l2Of(f);
    const entry = readU64(f, l2 + 8);
    patchU64(f, l2 + 8, entry | 0x10n); // bit 4: reserved in a standard descriptor
    expect(qemuCheck(f).status).toBe(2);
    const r = repairAll(f);
    expect(r.stderr).toMatch(/reserved bits cleared/);
    expect(r.stderr).not.toMatch(/flag restored/);
    expect(r.status, r.stderr).toBe(0);
    expect(readU64(f, l2 + 8)).toBe(entry);
    expect(readsBack(f, 0x11, 0, CS)).toBe(true);
    expect(readsBack(f, 0x22, CS, CS)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});
