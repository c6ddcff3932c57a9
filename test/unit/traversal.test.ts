// The one metadata traversal (engine/image/traversal) on real images made by qemu-img/qemu-io:
// the references it yields are exactly the ones QEMU counts (every host cluster's refcount on a
// clean image), the active mappings are the ones `qemu-img map` shows, referrers name the right
// table, entry, guest offset and snapshot, and damaged pointers are reported, never followed.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { CancelledError } from '../../engine/base/errors.js';
import { CancelToken } from '../../engine/base/task-control.js';
import { u32 } from '../../engine/format/bytes.js';
import { ClusterType, l1Offset } from '../../engine/format/l2-entry.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { findClusterReferrers, sourceOf, traverse } from '../../engine/image/traversal/index.js';
import type { L2Entry, Reference, TableRead } from '../../engine/image/traversal/index.js';
import { FileIO } from '../../engine/io/file-io.js';
import type { PositionalIO } from '../../engine/io/positional-io.js';
import { createQcow2, patchU64, qemuCheck, qemuImg, qemuIo, readU64, tempDir } from '../helpers/qemu.js';

const tmp = tempDir('q2d-traversal-');
afterAll(() => tmp.cleanup());

/** Build an image: qemu-io command lists, `snap NAME` and `bitmap NAME` steps in order. */
function build(name: string, size: string, opts: Record<string, string | number | boolean>, steps: string[][]) {
  const f = join(tmp.dir, name);
  createQcow2(f, size, opts);
  for (const s of steps) {
    if (s[0] === 'snap') qemuImg('snapshot', '-c', s[1]!, f);
    else if (s[0] === 'bitmap') qemuImg('bitmap', '--add', f, s[1]!);
    else qemuIo(f, s);
  }
  return f;
}

/** Open an image whose reads are recorded, run `fn`, close it. */
async function withImage<T>(f: string, fn: (img: Qcow2Image, reads: Array<[number, number]>) => Promise<T>) {
  const io = await FileIO.open(f);
  const reads: Array<[number, number]> = [];
  const recording: PositionalIO = {
    name: io.name,
    readOnly: true,
    read: (offset, length) => {
      reads.push([offset, length]);
      return io.read(offset, length);
    },
    write: () => Promise.reject(new Error('read-only')),
    flush: () => Promise.resolve(),
    size: () => io.size(),
    truncate: () => Promise.reject(new Error('read-only')),
    close: () => Promise.resolve(),
  };
  try {
    return await fn(await Qcow2Image.open(recording), reads);
  } finally {
    await io.close();
  }
}

interface Walked {
  /** References per host cluster, counted as QEMU counts them. */
  counts: Map<number, number>;
  refs: Reference[];
  entries: Array<Omit<L2Entry, 'layer'> & { snapshotId?: string }>;
  tables: TableRead[];
}

async function walk(img: Qcow2Image, opts: Parameters<typeof traverse>[2] = { sharedL2: 'repeat' }): Promise<Walked> {
  const cs = img.clusterSize;
  const out: Walked = { counts: new Map(), refs: [], entries: [], tables: [] };
  const count = (off: number, len: number): void => {
    for (let c = Math.floor(off / cs); c <= Math.floor((off + len - 1) / cs); c++)
      out.counts.set(c, (out.counts.get(c) ?? 0) + 1);
  };
  await traverse(
    sourceOf(img),
    {
      reference: (r) => {
        out.refs.push(r);
        if (!r.problem && r.length > 0) count(r.offset, r.length);
      },
      l2Entry: (e) => {
        const { layer, ...rest } = e;
        out.entries.push({ ...rest, ...(layer.snapshotId !== undefined ? { snapshotId: layer.snapshotId } : {}) });
        if (e.length > 0 && !e.problem) count(e.offset, e.length);
      },
      table: (t) => out.tables.push(t),
    },
    opts,
  );
  return out;
}

const IMAGES: Array<[string, () => string]> = [
  [
    'snapshots, persistent bitmaps and compressed clusters (64 KiB)',
    () =>
      build('rich.qcow2', '64M', {}, [
        ['write -P 1 0 1M', 'write -c -P 3 2M 128k'],
        ['bitmap', 'b0'],
        ['write -P 7 8M 512k'],
        ['snap', 's1'],
        ['write -P 2 0 64k', 'write -P 4 40M 64k'],
        ['snap', 's2'],
        ['write -P 5 64k 64k'],
        ['snap', 's3'],
      ]),
  ],
  [
    'extended L2 with a snapshot',
    () =>
      build('ext.qcow2', '64M', { extended_l2: true }, [
        ['write -P 1 0 4k', 'write -P 1 1M 64k', 'write -z 2M 64k'],
        ['snap', 's1'],
        ['write -P 2 0 4k'],
      ]),
  ],
  [
    '512 B clusters, compressed, a snapshot',
    () =>
      build('c512.qcow2', '8M', { cluster_size: 512 }, [
        ['write -P 1 0 64k', 'write -c -P 2 1M 8k'],
        ['snap', 's1'],
        ['write -P 3 0 4k'],
      ]),
  ],
  [
    '2 MiB clusters, compressed, a snapshot',
    () =>
      build('c2m.qcow2', '1G', { cluster_size: 2 * 1024 * 1024 }, [
        ['write -P 1 0 64k', 'write -c -P 2 600M 2M'],
        ['snap', 's1'],
        ['write -P 3 0 4k'],
      ]),
  ],
  [
    'an overlay on a backing file',
    () => {
      const base = build('base.qcow2', '16M', {}, [['write -P 9 0 4M']]);
      const f = join(tmp.dir, 'overlay.qcow2');
      createQcow2(f, '16M', {}, { file: base, format: 'qcow2' });
      qemuIo(f, ['write -P 1 1M 128k', 'write -z 3M 64k']);
      return f;
    },
  ],
];

describe('traversal on clean images made by QEMU', () => {
  for (const [what, make] of IMAGES) {
    it(`${what}: yields exactly the references QEMU counts, and the mappings qemu-img map shows`, async () => {
      const f = make();
      const q = qemuCheck(f);
      expect(q.status).toBe(0);
      expect([q.json?.leaks ?? 0, q.json?.corruptions ?? 0]).toEqual([0, 0]);
      const map = JSON.parse(qemuImg('map', '--output=json', f)) as Array<{
        start: number;
        depth: number;
        offset?: number;
      }>;
      await withImage(f, async (img) => {
        const w = await walk(img);
        expect(w.refs.filter((r) => r.problem)).toEqual([]);
        // Clean image: every host cluster's refcount is its number of references, and vice versa.
        const n = Math.ceil(img.fileSize / img.clusterSize);
        for (let c = 0; c < n; c++) expect([c, w.counts.get(c) ?? 0]).toEqual([c, await img.refcount(c)]);
        const cs = img.clusterSize;
        const host = new Map<number, number>();
        for (const e of w.entries)
          if (e.snapshotId === undefined && !e.repeat && e.type === ClusterType.Normal)
            host.set(e.guestOffset, e.offset);
        const mapped = map.filter((m) => m.offset !== undefined && m.depth === 0);
        expect(mapped.length).toBeGreaterThan(0);
        for (const m of mapped) {
          const g = Math.floor(m.start / cs) * cs;
          expect([m.start, host.get(g)! + (m.start - g)]).toEqual([m.start, m.offset]);
        }
      });
    });
  }

  it('reads L2 tables at aligned offsets, each once, and walks a shared L2 table once per L1 reference', async () => {
    const f = IMAGES[0]![1]();
    await withImage(f, async (img) => {
      const w = await walk(img, { sharedL2: 'repeat', batchBytes: 4 * img.clusterSize });
      const l2 = w.tables.filter((t) => t.kind === 'l2');
      expect(l2.every((t) => t.offset % img.clusterSize === 0)).toBe(true);
      const first = l2.filter((t) => !t.repeat).map((t) => t.offset);
      expect(new Set(first).size).toBe(first.length);
      // One walk per L1 reference, and tables shared between layers among them.
      const followed = w.refs.filter((r) => r.target === 'l2' && !r.problem);
      expect(l2.length).toBe(followed.length);
      expect(l2.some((t) => t.repeat)).toBe(true);
      for (const t of l2) if (t.repeat) expect(first).toContain(t.offset);
      const once = await walk(img, { sharedL2: 'once' });
      expect(once.tables.filter((t) => t.kind === 'l2').length).toBe(new Set(first).size);
    });
  });
});

describe('the active layer alone', () => {
  it('hands over each active L2 table in L1 order and waits on each (activeLayerOnly, l2TableEnd)', async () => {
    const f = IMAGES[2]![1](); // 512 B clusters: an L2 table maps 32 KiB, so several L1 entries; and a snapshot
    await withImage(f, async (img) => {
      const expected: Array<[number, number]> = [];
      for (let i = 0; i < img.header.l1Size; i++) {
        const off = l1Offset(u32(img.l1, 8 * i), u32(img.l1, 8 * i + 4));
        if (off) expected.push([i, off]);
      }
      expect(expected.length, 'premise: several L2 tables').toBeGreaterThan(2);
      const refs: Reference[] = [];
      const seen: Array<[number, number]> = [];
      let inside = 0;
      await traverse(
        sourceOf(img),
        {
          reference: (r) => {
            refs.push(r);
          },
          l2TableEnd: async (t, bytes) => {
            expect(inside, 'one table at a time').toBe(0);
            inside++;
            await new Promise((resolve) => setTimeout(resolve, 1));
            expect(bytes.length).toBe(img.clusterSize);
            seen.push([t.index!, t.offset]);
            inside--;
          },
        },
        { activeLayerOnly: true, asQemuCheck: true, batchBytes: 2 * img.clusterSize },
      );
      expect(seen).toEqual(expected);
      expect(new Set(refs.map((r) => r.target))).toEqual(new Set(['l1', 'l2']));
      expect(refs.every((r) => r.from.snapshotId === undefined)).toBe(true);
    });
  });
});

describe('chosen layers alone', () => {
  it('walks only the layers given, in their order, each L2 table once over all of them (layersOnly)', async () => {
    const f = build('two-snaps.qcow2', '8M', { cluster_size: 512 }, [
      ['write -P 1 0 64k'],
      ['snap', 's1'],
      ['write -P 2 0 512'],
      ['snap', 's2'],
      ['write -P 3 32k 512'],
    ]);
    await withImage(f, async (img) => {
      const snapL1: Reference[] = [];
      const snapTables = new Set<number>();
      await traverse(sourceOf(img), {
        reference: (r) => {
          if (r.target === 'snapshot-l1') snapL1.push(r);
          if (r.target === 'l2' && r.from.snapshotId !== undefined) snapTables.add(r.offset);
        },
      });
      expect(snapL1.map((r) => r.from.snapshotId)).toEqual(['1', '2']);
      // Chosen in reverse order: snapshot 2's tables first, then those of snapshot 1 not walked yet.
      const layers = [...snapL1].reverse().map((r) => ({
        l1Offset: r.offset,
        l1Size: r.length / 8,
        snapshotId: r.from.snapshotId!,
      }));
      const targets = new Set<string>();
      const walked: Array<[string, number]> = [];
      await traverse(
        sourceOf(img),
        {
          reference: (r) => {
            targets.add(r.target);
          },
          l2TableEnd: (t) => {
            walked.push([t.layer!.snapshotId!, t.offset]);
          },
        },
        { layersOnly: layers, batchBytes: 2 * img.clusterSize },
      );
      expect(targets).toEqual(new Set(['snapshot-l1', 'l2']));
      const offsets = walked.map((w) => w[1]);
      expect(new Set(offsets).size, 'each table once').toBe(offsets.length);
      expect(new Set(offsets)).toEqual(snapTables);
      const firstOfS1 = walked.findIndex((w) => w[0] === '1');
      expect(firstOfS1, 'premise: snapshot 1 has a table of its own').toBeGreaterThan(0);
      expect(walked.slice(0, firstOfS1).every((w) => w[0] === '2')).toBe(true);
      expect(walked.slice(firstOfS1).every((w) => w[0] === '1')).toBe(true);
    });
  });
});

describe('referrers', () => {
  it('names the table, entry, guest offset and snapshot of every reference to a cluster', async () => {
    const f = build('refs.qcow2', '64M', {}, [['write -P 1 0 128k'], ['snap', 's1'], ['write -P 2 0 64k']]);
    await withImage(f, async (img) => {
      const cs = img.clusterSize;
      const l1 = img.header.l1TableOffset;
      const w = await walk(img);
      // Guest cluster 1 is shared by the active layer and snapshot 1.
      const shared = w.entries.find((e) => e.guestOffset === cs && e.snapshotId === undefined)!;
      const inSnapshot = w.entries.find((e) => e.guestOffset === cs && e.snapshotId === '1')!;
      expect(inSnapshot.offset).toBe(shared.offset);
      const snapL1 = w.refs.find((r) => r.target === 'snapshot-l1')!;
      const { found, complete } = await findClusterReferrers(sourceOf(img), new Set([shared.offset / cs, 0]));
      expect(complete).toBe(true);
      const data = found.get(shared.offset / cs)!;
      expect(data.references).toBe(2);
      expect(data.referrers).toEqual([
        { kind: 'l2', table: shared.table, index: 1, guestOffset: cs },
        { kind: 'snapshot-l2', table: inSnapshot.table, index: 1, guestOffset: cs, snapshotId: '1' },
      ]);
      expect(found.get(0)!.referrers).toEqual([{ kind: 'header' }]);
      // The snapshot's L1 table is named by the snapshot table entry, the active one by the header.
      expect(snapL1.from).toEqual({
        kind: 'snapshot-table',
        table: img.header.snapshotsOffset,
        index: 0,
        snapshotId: '1',
      });
      const l1Ref = w.refs.find((r) => r.target === 'l1')!;
      expect([l1Ref.offset, l1Ref.from]).toEqual([l1, { kind: 'header' }]);
    });
  });

  it('counts hundreds of references to one cluster exactly and lists only the first', async () => {
    // 64 KiB clusters of one byte value compress to a few bytes: hundreds share one host cluster.
    const f = build('packed.qcow2', '64M', {}, [['write -c -P 0x5a 0 32M']]);
    await withImage(f, async (img) => {
      const w = await walk(img);
      const busiest = [...w.counts].sort((a, b) => b[1] - a[1])[0]!;
      expect(busiest[1]).toBeGreaterThan(255);
      expect(busiest[1]).toBe(await img.refcount(busiest[0]));
      const { found } = await findClusterReferrers(sourceOf(img), new Set([busiest[0]]), { maxPerCluster: 10 });
      const r = found.get(busiest[0])!;
      expect([r.references, r.referrers.length, r.truncated]).toEqual([busiest[1], 10, true]);
      expect([...r.byKind]).toEqual([['l2', busiest[1]]]);
    });
  });
});

describe('damaged pointers are reported, never followed', () => {
  it('an unaligned and a past-EOF L1 entry, an unaligned data pointer, a refcount block past EOF', async () => {
    const f = build('damaged.qcow2', '2G', {}, [['write -P 1 0 128k', 'write -P 2 512M 64k', 'write -P 3 1G 64k']]);
    const l1 = Number(readU64(f, 40));
    const rt = Number(readU64(f, 48));
    const l2 = Number(readU64(f, l1) & 0xfffffffffe00n);
    patchU64(f, l1 + 8, 0x8000000000000000n | BigInt(0x70200)); // L1[1] → unaligned
    patchU64(f, l1 + 16, 0x8000000000000000n | 0x40000000000n); // L1[2] → far past EOF
    patchU64(f, l2 + 8, 0x8000000000000000n | BigInt(0x50200)); // L2[1] → unaligned data
    patchU64(f, rt + 8, 0x40000000000n); // reftable[1] → past EOF
    await withImage(f, async (img, reads) => {
      reads.length = 0;
      const w = await walk(img);
      const bad = w.refs.filter((r) => r.problem).map((r) => [r.target, r.from.kind, r.from.index, r.problem]);
      expect(bad).toEqual([
        ['l2', 'l1', 1, 'unaligned'],
        ['l2', 'l1', 2, 'beyond-eof'],
        ['refcount-block', 'refcount-table', 1, 'beyond-eof'],
      ]);
      expect(w.entries.filter((e) => e.problem).map((e) => [e.table, e.index, e.problem])).toEqual([
        [l2, 1, 'unaligned'],
      ]);
      expect(w.tables.filter((t) => t.kind === 'l2').map((t) => t.offset)).toEqual([l2]);
      expect(reads.some(([off]) => off === 0x70200 || off >= 0x40000000000)).toBe(false);
    });
  });

  it('a snapshot whose L1 table offset is unaligned', async () => {
    const f = build('snap-bad.qcow2', '64M', {}, [['write -P 1 0 64k'], ['snap', 's1']]);
    const snapTable = Number(readU64(f, 64));
    patchU64(f, snapTable, Number(readU64(f, snapTable)) + 0x200);
    await withImage(f, async (img) => {
      const w = await walk(img);
      const r = w.refs.find((x) => x.target === 'snapshot-l1')!;
      expect([r.problem, r.from.snapshotId]).toEqual(['unaligned', '1']);
      expect(w.tables.filter((t) => t.layer?.snapshotId !== undefined)).toEqual([]);
    });
  });

  it('stops when cancelled', async () => {
    const f = IMAGES[0]![1]();
    await withImage(f, async (img) => {
      const cancel = new CancelToken();
      cancel.cancel();
      await expect(traverse(sourceOf(img), {}, { cancel })).rejects.toBeInstanceOf(CancelledError);
    });
  });
});
