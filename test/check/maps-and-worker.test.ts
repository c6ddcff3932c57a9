// Role map, guest map, the app's cluster inspector, cancellation and the worker-thread check.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basename, join } from 'node:path';
import { checkFile, checkInWorker } from '../../engine/check/index.js';
import { Service } from '../../engine/service/service.js';
import { RecentStore } from '../../engine/service/recent.js';
import { ContractError } from '../../engine/contract/errors.js';
import type { FileRef } from '../../engine/contract/contract.js';
import { GuestState, HostRole } from '../../engine/contract/roles.js';
import { CancelledError } from '../../engine/base/errors.js';
import { CancelToken, type ProgressEvent } from '../../engine/base/task-control.js';
import { createQcow2, patchU64, qemuCheck, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { baseImage, SCENARIOS, snapshotImage } from './scenarios.js';

const tmp = tempDir('q2d-maps-');
afterAll(() => tmp.cleanup());
const scenario = (name: string) => SCENARIOS.find((s) => s.name === name)!;

describe('role map', () => {
  it('names every structure of an image with a snapshot', async () => {
    const f = snapshotImage(tmp.dir, 'roles');
    const r = await checkFile(f, { roleMap: true });
    const m = r.roleMap!;
    expect(m[0]).toBe(HostRole.Header);
    expect(m[1]).toBe(HostRole.RefcountTable);
    expect(m[2]).toBe(HostRole.RefcountBlock);
    expect(m[3]).toBe(HostRole.L1);
    expect(m[4]).toBe(HostRole.SnapshotL2); // the pre-snapshot L2 now belongs to the snapshot
    expect(m[5]).toBe(HostRole.SnapshotData); // guest cluster 0 before the overwrite
    expect(m[6]).toBe(HostRole.Data); // shared by both
    expect(m[7]).toBe(HostRole.SnapshotL1);
    expect(m[8]).toBe(HostRole.SnapshotTable);
    expect(m[9]).toBe(HostRole.L2);
    expect(m[10]).toBe(HostRole.Data);
  });

  it('marks leaked and corrupt clusters', async () => {
    const leak = await checkFile(scenario('leak').build(tmp.dir), { roleMap: true });
    expect(leak.roleMap![6]).toBe(HostRole.Leaked);
    const s5 = await checkFile(scenario('l2-points-into-l1').build(tmp.dir), { roleMap: true });
    expect(s5.roleMap![3]).toBe(HostRole.Corrupt);
  });

  it('costs nothing unless asked for', async () => {
    const r = await checkFile(scenario('leak').build(tmp.dir));
    expect(r.roleMap).toBeUndefined();
    expect(r.guestMap).toBeUndefined();
  });
});

describe('guest map', () => {
  it('tells data, zero, compressed and unallocated clusters apart', async () => {
    const f = join(tmp.dir, 'guest.qcow2');
    createQcow2(f, '8M');
    qemuIo(f, ['write -P 1 0 64k', 'write -z 64k 64k', 'write -c -P 2 128k 64k']);
    const r = await checkFile(f, { guestMap: true });
    const g = r.guestMap!;
    expect(g.length).toBe(128);
    expect([g[0], g[1], g[2], g[3]]).toEqual([
      GuestState.Data,
      GuestState.Zero,
      GuestState.Compressed,
      GuestState.Unallocated,
    ]);
  });

  it('shows unallocated clusters of an overlay as read from the backing file', async () => {
    const f = scenario('clean-backing').build(tmp.dir);
    const r = await checkFile(f, { guestMap: true });
    expect(r.guestMap![1]).toBe(GuestState.Data);
    expect(r.guestMap![0]).toBe(GuestState.Backing);
  });

  it('shows partly allocated extended-L2 clusters', async () => {
    const f = join(tmp.dir, 'ext-guest.qcow2');
    createQcow2(f, '8M', { extended_l2: true });
    qemuIo(f, ['write -P 1 0 4k', 'write -P 1 64k 64k', 'write -z 128k 64k']);
    const g = (await checkFile(f, { guestMap: true })).guestMap!;
    expect([g[0], g[1], g[2], g[3]]).toEqual([
      GuestState.Partial,
      GuestState.Data,
      GuestState.Zero,
      GuestState.Unallocated,
    ]);
  });
});

describe("the app's cluster inspector (cluster.describe)", () => {
  let service: Service;
  beforeAll(() => {
    service = new Service({
      kind: 'test',
      samples: [],
      recent: new RecentStore(),
      resolve: async (ref: FileRef) => {
        if (ref.kind !== 'root') throw new ContractError('not-available', 'test host');
        return { path: join(tmp.dir, ref.path), name: ref.path };
      },
    });
  });
  afterAll(() => service.dispose());
  /** Open `file` in the app, check it, describe the clusters asked for, close it. */
  const inspect = async (file: string, clusters: number[]) => {
    const { handle } = await service.call('image.open', { ref: { kind: 'root', path: basename(file) } });
    try {
      await service.call('check.run', { handle });
      const out = [];
      for (const cluster of clusters) out.push(await service.call('cluster.describe', { handle, cluster }));
      return out;
    } finally {
      await service.call('image.close', { handle });
    }
  };

  it('lists both L2 entries of a cross-linked cluster with the on-disk refcount', async () => {
    const [d, l2, leaked, rb] = await inspect(scenario('cross-link-data').build(tmp.dir), [5, 4, 6, 2]);
    expect(d!.refcount).toBe(1);
    expect(d!.references).toBe(2);
    // Both referrers map guest data; the checker's map calls the cluster corrupt (refcount 1 < 2 references).
    expect(d!.referrersByKind).toEqual([{ kind: 'l2', count: 2 }]);
    expect(d!.roleName).toBe('corrupt');
    expect(d!.referrers).toEqual([
      { kind: 'l2', table: 0x40000, index: 0, guestOffset: 0 },
      { kind: 'l2', table: 0x40000, index: 1, guestOffset: 0x10000 },
    ]);
    expect(l2!.role).toBe(HostRole.L2);
    expect(l2!.referrers).toEqual([{ kind: 'l1', table: 0x30000, index: 0 }]);
    expect([leaked!.role, leaked!.references, leaked!.refcount]).toEqual([HostRole.Leaked, 0, 1]);
    expect(rb!.referrers).toEqual([{ kind: 'refcount-table', table: 0x10000, index: 0 }]);
  });

  it("names both referrers of a cross-link in the check's anomaly", async () => {
    const r = await checkFile(scenario('cross-link-data').build(tmp.dir));
    const a = r.anomalies.find((x) => x.kind === 'refcount-too-low')!;
    expect([a.firstCluster, a.refcount, a.references]).toEqual([5, 1, 2]);
    expect(a.referrers).toEqual([
      { kind: 'l2', table: 0x40000, index: 0, guestOffset: 0 },
      { kind: 'l2', table: 0x40000, index: 1, guestOffset: 0x10000 },
    ]);
    const s5 = await checkFile(scenario('l2-points-into-l1').build(tmp.dir));
    const b = s5.anomalies.find((x) => x.kind === 'refcount-too-low')!;
    expect(b.referrers!.map((x) => x.kind).sort()).toEqual(['header', 'l1', 'l2']);
  });

  it('names the snapshot that reaches a cluster', async () => {
    const [d] = await inspect(scenario('clean-snapshots').build(tmp.dir), [5]);
    expect(d!.referrers.some((r) => r.snapshotId === '1' && r.kind === 'snapshot-l2')).toBe(true);
  });
});

describe('progress, cancellation, worker thread', () => {
  const bigImage = (): string => {
    const f = join(tmp.dir, 'prealloc.qcow2');
    createQcow2(f, '64G', { preallocation: 'metadata' });
    return f;
  };

  it('reports progress up to 1 and stops when cancelled', async () => {
    const f = bigImage();
    const seen: ProgressEvent[] = [];
    await checkFile(f, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.at(-1)!.fraction).toBe(1);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.fraction).toBeGreaterThanOrEqual(seen[i - 1]!.fraction);
    const cancel = new CancelToken();
    await expect(
      checkFile(f, {
        cancel,
        onProgress: (p) => {
          if (p.fraction > 0.1) cancel.cancel();
        },
      }),
    ).rejects.toBeInstanceOf(CancelledError);
  });

  it('runs a check in a worker thread with the same verdict, lines and progress', async () => {
    const f = scenario('cross-link-data').build(tmp.dir);
    const inProcess: string[] = [];
    const a = await checkFile(f, { onMessage: (l) => inProcess.push(l), roleMap: true });
    const lines: string[] = [];
    const progress: number[] = [];
    const b = await checkInWorker(f, {
      onMessage: (l) => lines.push(l),
      onProgress: (p) => progress.push(p.fraction),
      roleMap: true,
    });
    expect(b.counters).toEqual(a.counters);
    expect(lines).toEqual(inProcess);
    expect(Array.from(b.roleMap!)).toEqual(Array.from(a.roleMap!));
    expect(progress.at(-1)).toBe(1);
    expect(b.anomalies).toEqual(a.anomalies);
  });

  it('cancels a worker check and rebuilds typed errors', async () => {
    const f = bigImage();
    const cancel = new CancelToken();
    cancel.cancel();
    await expect(checkInWorker(f, { cancel })).rejects.toBeInstanceOf(CancelledError);
    const bad = join(tmp.dir, 'bad-cluster-bits.qcow2');
    createQcow2(bad, '8M');
    patchU64(bad, 16, 30); // backing_file_size (0) and cluster_bits = 30
    await expect(checkInWorker(bad)).rejects.toThrow('Unsupported cluster size: 2^30 (header.cluster_bits = 30)');
  });

  it('checks a 64 GiB preallocated image exactly like QEMU', async () => {
    const f = bigImage();
    const q = qemuCheck(f);
    const r = await checkFile(f);
    expect(r.counters.allocatedClusters).toBe(q.json!['allocated-clusters']);
    expect(r.counters.imageEndOffset).toBe(q.json!['image-end-offset']);
    expect(r.counters.corruptions + r.counters.leaks + r.counters.checkErrors).toBe(0);
  });

  it('checks a small image in-process quickly enough for thousands of crash states (no per-call setup)', async () => {
    const f = baseImage(tmp.dir, 'many.qcow2');
    void qemuImg;
    for (let i = 0; i < 50; i++) {
      const r = await checkFile(f);
      expect(r.counters.corruptions).toBe(0);
    }
  });
});
