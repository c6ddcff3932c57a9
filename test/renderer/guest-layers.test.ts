// The guest map by layer, as the service hands it to the renderer: on a real qemu-img chain (a raw
// or qcow2 base, an overlay with data in both), every guest cluster names the layer `qemu-img map`
// reads it from; a missing backing file is "unknown", never "zeros".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { Service } from '../../engine/service/service.js';
import { RecentStore } from '../../engine/service/recent.js';
import { ContractError } from '../../engine/contract/errors.js';
import type { FileRef } from '../../engine/contract/contract.js';
import { ORIGIN_UNKNOWN, ORIGIN_ZERO } from '../../engine/contract/guest-layers.js';

const t = tempDir('q2d-layers-');
let service: Service;

beforeAll(() => {
  service = new Service({
    kind: 'test',
    samples: [],
    recent: new RecentStore(),
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

async function guestMapOf(name: string) {
  const opened = await service.call('image.open', { ref: { kind: 'root', path: name } });
  await service.call('check.run', { handle: opened.handle });
  return service.call('map.guest', { handle: opened.handle });
}

/** Origin code per guest cluster from `qemu-img map --output=json` (depth of the layer with data). */
function qemuOrigins(file: string, clusterSize: number, clusters: number): Uint8Array {
  const out = new Uint8Array(clusters).fill(ORIGIN_ZERO);
  const map = JSON.parse(qemuImg('map', '--output=json', file)) as Array<{
    start: number;
    length: number;
    depth: number;
    data: boolean;
  }>;
  for (const e of map) {
    if (!e.data) continue;
    for (let k = Math.floor(e.start / clusterSize); k < Math.ceil((e.start + e.length) / clusterSize); k++)
      if (out[k] === ORIGIN_ZERO || 1 + e.depth < out[k]!) out[k] = 1 + e.depth;
  }
  return out;
}

describe('guest map by layer of the backing chain', () => {
  it('base + overlay: each guest cluster is read from the layer qemu-img map names', async () => {
    const base = join(t.dir, 'base.qcow2');
    createQcow2(base, '64M', { cluster_size: 65536 });
    qemuIo(base, ['write -P 0x11 0 4M', 'write -P 0x12 32M 64k']);
    const top = join(t.dir, 'overlay.qcow2');
    createQcow2(top, '64M', { cluster_size: 65536 }, { file: 'base.qcow2', format: 'qcow2' });
    // The overlay rewrites part of the base's data and adds some of its own.
    qemuIo(top, ['write -P 0x21 1M 128k', 'write -P 0x22 48M 64k']);
    const g = await guestMapOf('overlay.qcow2');
    expect(g.layersError).toBeUndefined();
    const layers = g.layers!;
    expect(layers.layers.map((l) => [l.depth, l.name, l.format])).toEqual([
      [0, 'overlay.qcow2', 'qcow2'],
      [1, 'base.qcow2', 'qcow2'],
    ]);
    expect(layers.origin).toEqual(qemuOrigins(top, g.clusterSize, g.guestClusters));
    // 2 + 1 clusters of the overlay's own; the base's 64 + 1 minus the 2 the overlay hides.
    expect(layers.layers[0]!.clusters).toBe(3);
    expect(layers.layers[1]!.clusters).toBe(63);
    expect(layers.zeroClusters).toBe(1024 - 66);
    expect(layers.origin[16]).toBe(1); // guest 1M: the overlay's copy
    expect(layers.origin[0]).toBe(2); // guest 0: the base
    expect(layers.origin[768]).toBe(1); // guest 48M: only in the overlay
    expect(layers.unknownClusters).toBe(0);
  });

  it('three layers with a raw base and different cluster sizes agree with qemu-img map', async () => {
    const raw = join(t.dir, 'disk.raw');
    qemuImg('create', '-q', '-f', 'raw', raw, '16M');
    qemuIo(raw, ['write -P 0x31 0 1M', 'write -P 0x32 8M 512k'], { format: 'raw' });
    const mid = join(t.dir, 'mid.qcow2');
    createQcow2(mid, '16M', { cluster_size: 4096 }, { file: 'disk.raw', format: 'raw' });
    qemuIo(mid, ['write -P 0x41 512k 8k', 'write -P 0x42 12M 4k']);
    const top = join(t.dir, 'top3.qcow2');
    createQcow2(top, '16M', { cluster_size: 65536 }, { file: 'mid.qcow2', format: 'qcow2' });
    qemuIo(top, ['write -P 0x51 4M 64k']);
    const g = await guestMapOf('top3.qcow2');
    const layers = g.layers!;
    expect(layers.layers.map((l) => l.name)).toEqual(['top3.qcow2', 'mid.qcow2', 'disk.raw']);
    expect(layers.origin).toEqual(qemuOrigins(top, g.clusterSize, g.guestClusters));
    expect(layers.layers.map((l) => l.clusters)).toEqual([1, 2, 24 - 1]);
  });

  it('a backing file that is missing: its share is unknown, not zeros', async () => {
    const base = join(t.dir, 'gone-base.qcow2');
    createQcow2(base, '8M');
    qemuIo(base, ['write -P 0x61 0 1M']);
    const top = join(t.dir, 'orphan.qcow2');
    createQcow2(top, '8M', {}, { file: 'gone-base.qcow2', format: 'qcow2' });
    qemuIo(top, ['write -P 0x62 2M 64k']);
    renameSync(base, join(t.dir, 'moved.qcow2'));
    const g = await guestMapOf('orphan.qcow2');
    const layers = g.layers!;
    expect(layers.layers).toHaveLength(1);
    expect(layers.stoppedAt).toMatch(/gone-base\.qcow2/);
    expect(layers.layers[0]!.clusters).toBe(1);
    expect(layers.unknownClusters).toBe(127);
    expect(layers.origin[32]).toBe(1);
    expect(layers.origin[0]).toBe(ORIGIN_UNKNOWN);
  });

  it('an image without a backing file has no layers to tell apart', async () => {
    createQcow2(join(t.dir, 'single.qcow2'), '8M');
    const g = await guestMapOf('single.qcow2');
    expect(g.layers).toBeUndefined();
  });
});
