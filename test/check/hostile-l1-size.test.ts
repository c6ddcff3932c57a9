// The fuzzer's slow check: header.l1_size at QEMU's maximum (0x400000 entries, a 32 MiB L1) on an
// image with 256 KiB clusters, so the L1 runs over other clusters and far past the end of the file.
// Thousands of its entries (guest data read as L1 entries) point to L2 tables past the end of the
// file; each reads as 32,768 zero entries. The checker must not walk those entry by entry: its
// per-entry work is bounded by what the file holds, not by L1 size x table size. Same verdict as
// qemu-img check.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openForCheck, runCheckPasses } from '../../engine/check/index.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { createQcow2, patchU32, qemuCheck, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-l1max-');
afterAll(t.cleanup);

const L1_MAX_ENTRIES = 0x400000;
const TABLE_ENTRIES = (256 * 1024) / 8;

/** MemoryIO that counts the bytes read. */
class CountingIO extends MemoryIO {
  bytesRead = 0;
  override async read(offset: number, length: number): Promise<Uint8Array> {
    const b = await super.read(offset, length);
    this.bytesRead += b.length;
    return b;
  }
}

function hostileImage(name: string, compat: string): string {
  const p = join(t.dir, name);
  createQcow2(p, '4M', { compat, cluster_size: '256k' });
  qemuIo(p, ['write -P 1 0 64k', 'write -c -P 9 1M 256k']);
  qemuImg('snapshot', '-c', 'one', p);
  qemuIo(p, ['write -P 2 32k 64k']);
  patchU32(p, 36, L1_MAX_ENTRIES);
  return p;
}

describe('check: l1_size at its maximum over a small file', () => {
  // Version 2 (the fuzzer's seed): every table takes the general per-entry loop.
  it("v2 image: per-entry work bounded by the file, verdict as qemu-img's", async () => {
    const p = hostileImage('l1max.qcow2', '0.10');
    const bytes = new Uint8Array(readFileSync(p));
    const io = new CountingIO(bytes);
    const a = await runCheckPasses(await openForCheck(io));
    const q = qemuCheck(p);
    expect(a.failed).toBeUndefined();
    expect(a.counters.corruptions).toBe(q.json!.corruptions ?? 0);
    expect(a.counters.leaks).toBe(q.json!.leaks ?? 0);
    // Thousands of L1 entries lead past the end of the file.
    expect(a.counters.corruptions).toBeGreaterThan(10_000);
    // Walked entry by entry, those tables alone would be over 600 million entries per pass. The
    // file holds bytes.length / 8 entries; each is handled at most a few times (walk, COPIED pass).
    expect(a.entriesVisited).toBeGreaterThan(0);
    expect(a.entriesVisited).toBeLessThan((4 * bytes.length) / 8);
    expect(a.entriesVisited).toBeLessThan(TABLE_ENTRIES * 100);
    // Reads: the L1 (what of it lies in the file) and the tables, not 32 MiB per zero table.
    expect(io.bytesRead).toBeLessThan(8 * bytes.length);
  });
});
