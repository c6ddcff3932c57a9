// The traversal in QEMU's check order (`asQemuCheck`), the walk the checker runs on: structures in
// calculate_refcounts' order, every non-empty L1 entry followed in place (a table shared by two
// entries handed over twice, each right after its entry; an unaligned entry read where it points),
// with the same per-cluster counts as the default walk on a clean image made by QEMU.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { sourceOf, traverse } from '../../engine/image/traversal/index.js';
import type { TraversalOptions } from '../../engine/image/traversal/index.js';
import { FileIO } from '../../engine/io/file-io.js';
import { createQcow2, patchU64, qemuImg, qemuIo, readU64, tempDir } from '../helpers/qemu.js';

const tmp = tempDir('q2d-traversal-qemu-');
afterAll(() => tmp.cleanup());

/** The walk as a list of events, and references per host cluster of every followed pointer. */
async function walk(f: string, opts: TraversalOptions) {
  const io = await FileIO.open(f);
  try {
    const img = await Qcow2Image.open(io);
    const cs = img.clusterSize;
    const events: string[] = [];
    const counts = new Map<number, number>();
    const count = (off: number, len: number) => {
      for (let k = Math.floor(off / cs); k <= Math.floor((off + len - 1) / cs); k++)
        counts.set(k, (counts.get(k) ?? 0) + 1);
    };
    await traverse(
      sourceOf(img),
      {
        reference: (r) => {
          events.push(r.target === 'l2' ? `l1[${r.from.index}]->${r.offset}` : r.target);
          if (r.target !== 'refcount-block' || !r.problem) count(r.offset, r.target === 'l2' ? cs : r.length);
          return true;
        },
        table: (t) => {
          if (t.kind === 'l2') events.push(`l2@${t.offset}`);
        },
        l2Entry: (e) => {
          if (e.length > 0) count(e.offset, e.length);
        },
      },
      { ...opts, refcountBlocks: false },
    );
    return { events, counts, img };
  } finally {
    await io.close();
  }
}

describe('traversal in QEMU check order', () => {
  const f = join(tmp.dir, 'snap-bitmap.qcow2');
  createQcow2(f, '1G');
  qemuIo(f, ['write -P 0x11 0 128k', 'write -P 0x22 600M 64k']);
  qemuImg('snapshot', '-c', 'first', f);
  qemuIo(f, ['write -P 0x33 0 64k']);
  qemuImg('bitmap', '--add', f, 'b0');

  it("visits the structures in calculate_refcounts' order, with the same counts as the default walk", async () => {
    const q = await walk(f, { asQemuCheck: true });
    const structures = q.events.filter((e) => !e.startsWith('l1[') && !e.startsWith('l2@'));
    const first = (s: string) => structures.indexOf(s);
    expect(structures[0]).toBe('header');
    expect(first('l1')).toBeLessThan(first('snapshot-l1'));
    expect(first('snapshot-l1')).toBeLessThan(first('snapshot-table'));
    expect(first('snapshot-table')).toBeLessThan(first('refcount-table'));
    expect(first('refcount-table')).toBeLessThan(first('bitmap-directory'));
    expect(first('bitmap-directory')).toBeLessThan(first('refcount-block'));
    expect(structures[structures.length - 1]).toBe('refcount-block');
    // Each L1 entry's table follows its reference at once.
    for (let i = 0; i < q.events.length; i++)
      if (q.events[i]!.startsWith('l1[')) expect(q.events[i + 1]).toBe(`l2@${q.events[i]!.split('->')[1]}`);
    const d = await walk(f, { sharedL2: 'repeat' });
    expect(new Map([...q.counts].sort())).toEqual(new Map([...d.counts].sort()));
  });

  it('follows every L1 entry in place: a shared table twice, an unaligned one where it points', async () => {
    const g = join(tmp.dir, 'shared.qcow2');
    createQcow2(g, '2G');
    qemuIo(g, ['write -P 0x44 0 64k']);
    const io = await FileIO.open(g);
    const l1 = (await Qcow2Image.open(io)).header.l1TableOffset;
    await io.close();
    const entry = readU64(g, l1);
    patchU64(g, l1 + 8, entry); // entry 1 shares entry 0's table
    patchU64(g, l1 + 16, entry + 512n); // entry 2 points into the middle of it
    const l2Offset = Number(entry & 0x00fffffffffffe00n);
    const q = await walk(g, { asQemuCheck: true });
    const tables = q.events.filter((e) => e.startsWith('l2@'));
    expect(tables).toEqual([`l2@${l2Offset}`, `l2@${l2Offset}`, `l2@${l2Offset + 512}`]);
    const d = await walk(g, {});
    expect(d.events.filter((e) => e.startsWith('l2@'))).toEqual([`l2@${l2Offset}`]);
  });
});
