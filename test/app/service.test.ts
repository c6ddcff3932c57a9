// The service's handlers on real images, judged by QEMU: overview (snapshots, bitmaps, backing
// chain), describe (refcount vs references, referrers across snapshots), guest.locate vs
// `qemu-img map`, refusals as typed errors, and the placeholders for other issues.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { Service } from '../../engine/service/service.js';
import { RecentStore } from '../../engine/service/recent.js';
import { ContractError } from '../../engine/contract/errors.js';
import { HostRole } from '../../engine/contract/roles.js';
import type { FileRef } from '../../engine/contract/contract.js';

const t = tempDir('q2d-service-');
let service: Service;
const recent = new RecentStore();

beforeAll(() => {
  service = new Service({
    kind: 'test',
    samples: [],
    recent,
    resolve: async (ref: FileRef) => {
      if (ref.kind !== 'root') throw new ContractError('not-available', 'test host');
      return { path: join(t.dir, ref.path), name: ref.path };
    },
  });
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
});

const open = (path: string) => service.call('image.open', { ref: { kind: 'root', path } });

describe('service handlers', () => {
  it('overview: snapshots, bitmaps and the backing chain as QEMU sees them', async () => {
    const base = join(t.dir, 'base.qcow2');
    createQcow2(base, '8M');
    const top = join(t.dir, 'top.qcow2');
    createQcow2(top, '8M', {}, { file: 'base.qcow2', format: 'qcow2' });
    qemuImg('bitmap', '--add', '-g', '131072', top, 'dirty0');
    qemuImg('snapshot', '-c', 'first', top);
    const o = await open('top.qcow2');
    const info = JSON.parse(qemuImg('info', '--output=json', top)) as {
      snapshots: Array<{ name: string; id: string }>;
      'format-specific': { data: { bitmaps: Array<{ name: string; granularity: number; flags: string[] }> } };
    };
    expect(o.overview.snapshots.map((s) => [s.id, s.name])).toEqual(info.snapshots.map((s) => [s.id, s.name]));
    expect(o.overview.bitmaps.map((b) => [b.name, b.granularity])).toEqual(
      info['format-specific'].data.bitmaps.map((b) => [b.name, b.granularity]),
    );
    expect(o.overview.backing).toEqual([
      { depth: 1, name: 'base.qcow2', format: 'qcow2', present: true, virtualSize: 8 * 1024 * 1024 },
    ]);
    expect(o.overview.features.map((f) => f.name)).toContain('bitmaps');
    expect(o.overview.extensions.map((e) => e.name)).toEqual(
      expect.arrayContaining(['backing file format', 'feature name table', 'bitmaps']),
    );
    expect(recent.list()[0]!.name).toBe('top.qcow2');
  });

  it('describe: a data cluster shared with a snapshot has refcount 2, two references, one per L1', async () => {
    const f = join(t.dir, 'snap.qcow2');
    createQcow2(f, '4M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x41 0 8k']);
    qemuImg('snapshot', '-c', 's1', f);
    const o = await open('snap.qcow2');
    await service.call('check.run', { handle: o.handle });
    const map = await service.call('map.host', { handle: o.handle });
    const loc = await service.call('guest.locate', { handle: o.handle, guestCluster: 0 });
    const d = await service.call('cluster.describe', { handle: o.handle, cluster: loc.hostCluster! });
    expect(map.roles[loc.hostCluster!]).toBe(HostRole.Data);
    expect(d.roleName).toBe('data');
    expect([d.refcount, d.references]).toEqual([2, 2]);
    expect(d.referrers.map((r) => [r.kind, r.index, r.guestOffset, r.snapshotId])).toEqual([
      ['l2', 0, 0, undefined],
      ['snapshot-l2', 0, 0, '1'],
    ]);
    // The L2 table itself: referenced by the active L1 and the snapshot's L1.
    const l2 = await service.call('cluster.describe', { handle: o.handle, cluster: loc.l2Table! / 4096 });
    expect(l2.referrers.map((r) => r.kind)).toEqual(['l1', 'snapshot-l1']);
    expect([l2.refcount, l2.references]).toEqual([2, 2]);
    const hdr = await service.call('cluster.describe', { handle: o.handle, cluster: 0 });
    expect([hdr.roleName, hdr.refcount, hdr.references, hdr.referrers]).toEqual(['header', 1, 1, [{ kind: 'header' }]]);
  });

  it('guest.locate agrees with qemu-img map (data, zero, compressed, unallocated)', async () => {
    const f = join(t.dir, 'loc.qcow2');
    createQcow2(f, '4M');
    qemuIo(f, ['write -P 0x11 64k 64k', 'write -z 128k 64k', 'write -c -P 0x22 192k 64k']);
    const o = await open('loc.qcow2');
    const qmap = JSON.parse(qemuImg('map', '--output=json', f)) as Array<{
      start: number;
      length: number;
      data: boolean;
      zero: boolean;
      offset?: number;
    }>;
    const at = (g: number) => qmap.find((e) => e.start <= g && g < e.start + e.length)!;
    const data = await service.call('guest.locate', { handle: o.handle, guestCluster: 1 });
    expect([data.stateName, data.hostOffset]).toEqual(['data', at(65536).offset]);
    const zero = await service.call('guest.locate', { handle: o.handle, guestCluster: 2 });
    expect(zero.stateName).toBe('zero');
    expect([at(131072).zero, at(131072).data]).toEqual([true, false]);
    const comp = await service.call('guest.locate', { handle: o.handle, guestCluster: 3 });
    expect(comp.stateName).toBe('compressed');
    expect(comp.compressedSize).toBeGreaterThan(0);
    // QEMU 7.2's map shows a compressed cluster as data without a host offset.
    expect([at(196608).data, at(196608).offset]).toEqual([true, undefined]);
    const none = await service.call('guest.locate', { handle: o.handle, guestCluster: 10 });
    expect(none.stateName).toBe('unallocated');
    expect(none.hostOffset).toBeUndefined();
    await expect(service.call('guest.locate', { handle: o.handle, guestCluster: 64 })).rejects.toMatchObject({
      code: 'invalid-argument',
      field: 'args.guestCluster',
    });
  });

  it('guest.locate follows the backing chain to the layer that holds the data, as qemu-img map does', async () => {
    const b0 = join(t.dir, 'chain0.qcow2');
    createQcow2(b0, '4M');
    qemuIo(b0, ['write -P 0x01 0 128k']);
    const b1 = join(t.dir, 'chain1.qcow2');
    createQcow2(b1, '4M', {}, { file: 'chain0.qcow2', format: 'qcow2' });
    qemuIo(b1, ['write -P 0x02 64k 64k']);
    const top = join(t.dir, 'chain2.qcow2');
    createQcow2(top, '4M', {}, { file: 'chain1.qcow2', format: 'qcow2' });
    const o = await open('chain2.qcow2');
    await service.call('check.run', { handle: o.handle });
    const qmap = JSON.parse(qemuImg('map', '--output=json', top)) as Array<{
      start: number;
      length: number;
      depth: number;
      offset?: number;
    }>;
    const at = (g: number) => qmap.find((e) => e.start <= g && g < e.start + e.length)!;
    const c0 = await service.call('guest.locate', { handle: o.handle, guestCluster: 0 });
    expect(c0.stateName).toBe('from backing file');
    expect(c0.backingLayer).toEqual({
      depth: at(0).depth,
      name: 'chain0.qcow2',
      stateName: 'data',
      hostOffset: at(0).offset,
    });
    const c1 = await service.call('guest.locate', { handle: o.handle, guestCluster: 1 });
    expect(c1.backingLayer).toEqual({
      depth: at(65536).depth,
      name: 'chain1.qcow2',
      stateName: 'data',
      hostOffset: at(65536).offset,
    });
    const c5 = await service.call('guest.locate', { handle: o.handle, guestCluster: 5 });
    // Unallocated in every layer: the walk ends at the base, which reads as zeroes.
    expect(c5.backingLayer).toEqual({ depth: 2, name: 'chain0.qcow2', stateName: 'unallocated' });
    expect(at(5 * 65536).offset).toBeUndefined();
  });

  it("refuses what is not a qcow2 image with QEMU's reason, and unknown handles", async () => {
    writeFileSync(join(t.dir, 'raw.img'), Buffer.alloc(4096));
    await expect(open('raw.img')).rejects.toMatchObject({
      name: 'Qcow2FormatError',
      qemuReason: 'Image is not in qcow2 format',
    });
    await expect(service.call('image.overview', { handle: 'no-such-handle' })).rejects.toMatchObject({
      code: 'not-found',
    });
    await expect(
      service.call('bytes.read', { handle: 'abcdefgh12', offset: 0, length: 3 * 1024 * 1024 }),
    ).rejects.toMatchObject({ code: 'invalid-argument', field: 'args.length' });
  });

  it('answers requests of later issues with not-available, and lists only real handlers as available', async () => {
    for (const m of [
      'triage.scan',
      'repair.plan',
      'repair.apply',
      'lock.status',
      'report.export',
      'salvage.scan',
    ] as const) {
      if (service.available().includes(m)) continue; // filled in by its issue since
      const args =
        m === 'triage.scan'
          ? {}
          : m === 'repair.apply'
            ? { handle: 'abcdefgh12', planId: 'p', target: { kind: 'inPlace' } }
            : m === 'report.export'
              ? { handle: 'abcdefgh12', format: 'json', save: { kind: 'inline' } }
              : { handle: 'abcdefgh12' };
      await expect(service.call(m, args)).rejects.toMatchObject({ code: 'not-available' });
    }
    const hello = await service.call('app.hello', {});
    expect(hello.available).toEqual(
      expect.arrayContaining(['image.open', 'check.run', 'map.host', 'cluster.describe', 'bytes.read']),
    );
  });
});
