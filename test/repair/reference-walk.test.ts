// The repair's reference walk against QEMU's own count: L2 tables read from their bytes (the plain
// ones) or entry by entry (any entry the walk must judge), references per cluster past what one
// byte holds, and the list of clusters whose refcount differs from their references.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, patchU64, qemuCheckHuman, qemuIo, readU64, tempDir } from '../helpers/qemu.js';
import { openInputFile } from '../../engine/io/input-file.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { walkReferences } from '../../engine/repair/references.js';

const t = tempDir('q2d-repair-walk-');
afterAll(t.cleanup);

const CS = 65536;
const OFFSET_MASK = 0x00fffffffffffe00n;

async function walk(file: string) {
  const io = await openInputFile(file);
  try {
    return await walkReferences(await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true }));
  } finally {
    await io.close();
  }
}

/** An image with `n` data clusters written at guest 0.., and its first L2 table's offset. */
function imageWithData(name: string, n: number): { file: string; l2: number } {
  const file = join(t.dir, name);
  createQcow2(file, '1G', { cluster_size: CS });
  qemuIo(file, [`write -P 0x5a 0 ${n * CS}`]);
  const l1 = Number(readU64(file, 40));
  return { file, l2: Number(readU64(file, l1) & OFFSET_MASK) };
}

describe('the repair reference walk', () => {
  it('counts 300 references to one data cluster exactly, as QEMU does', async () => {
    const { file, l2 } = imageWithData('shared.qcow2', 1);
    const entry = readU64(file, l2);
    const c = Number(entry & OFFSET_MASK) / CS;
    for (let i = 1; i < 300; i++) patchU64(file, l2 + 8 * i, entry);
    expect(qemuCheckHuman(file).stderr).toContain(`ERROR cluster ${c} refcount=1 reference=300`);
    const w = await walk(file);
    expect(w.refs[c]).toBe(300);
    expect(w.onDisk[c]).toBe(1);
    expect([...w.mismatched]).toEqual([c]);
    expect(w.multi.get(c)).toHaveLength(300);
  });

  it('gives a table with an entry to judge to the entry visitor, counting every cluster once', async () => {
    const { file, l2 } = imageWithData('reserved.qcow2', 12);
    // Entry 10 keeps its data cluster but gains a reserved bit: flagged, and still counted once.
    const e10 = readU64(file, l2 + 80);
    patchU64(file, l2 + 80, e10 | 0x2n);
    const w = await walk(file);
    for (let i = 0; i < 12; i++) {
      const c = Number(readU64(file, l2 + 8 * i) & OFFSET_MASK) / CS;
      expect(w.refs[c]).toBe(1);
    }
    expect(w.bad.map((b) => [b.kind, b.index])).toEqual([['l2-reserved-bits', 10]]);
    expect(w.mismatched).toHaveLength(0);
  });

  it('lists exactly the leaked clusters QEMU reports', async () => {
    const { file, l2 } = imageWithData('leaks.qcow2', 20);
    const leaked = [3, 11, 17].map((i) => {
      const c = Number(readU64(file, l2 + 8 * i) & OFFSET_MASK) / CS;
      patchU64(file, l2 + 8 * i, 0n);
      return c;
    });
    const qemu = qemuCheckHuman(file).stderr;
    for (const c of leaked) expect(qemu).toContain(`Leaked cluster ${c} refcount=1 reference=0`);
    const w = await walk(file);
    expect([...w.mismatched]).toEqual(leaked.sort((a, b) => a - b));
    expect(w.onDiskUnknown).toHaveLength(0);
  });
});
