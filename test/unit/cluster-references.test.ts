// Exact reference counts for the cluster inspector on a real compressed image: qemu-img convert -c
// packs hundreds of compressed clusters into one host cluster, so its count is far past the 255 at
// which the checker's per-cluster byte saturates. QEMU's own refcounts (the image checks clean) are
// the oracle: the inspector must show exactly them, never "255", however small the listing budget.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { runCheckPasses } from '../../engine/check/index.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { FileIO } from '../../engine/io/file-io.js';
import { checkerCountCap, clusterReferences } from '../../engine/service/referrers.js';
import { Service } from '../../engine/service/service.js';
import { RecentStore } from '../../engine/service/recent.js';
import { ContractError } from '../../engine/contract/errors.js';
import { HostRole } from '../../engine/contract/roles.js';
import type { FileRef } from '../../engine/contract/contract.js';

const t = tempDir('q2d-refs-');
const file = join(t.dir, 'packed.qcow2');
let io: FileIO;
let image: Qcow2Image;
/** Host clusters holding compressed data, with QEMU's refcount for each. */
const packed: Array<{ cluster: number; refcount: number }> = [];

beforeAll(async () => {
  const raw = join(t.dir, 'pattern.raw');
  qemuImg('create', '-q', '-f', 'raw', raw, '64M');
  qemuIo(raw, ['write -P 0x41 0 64M'], { format: 'raw' });
  qemuImg('convert', '-c', '-O', 'qcow2', raw, file);
  expect(qemuImg('check', file)).toContain('No errors were found on the image.');
  io = await FileIO.open(file);
  image = await Qcow2Image.open(io);
  const a = await runCheckPasses(image, { roleMap: true });
  for (let k = 0; k < a.fileClusters; k++)
    if (a.roleMap![k] === HostRole.Compressed) packed.push({ cluster: k, refcount: await image.refcount(k) });
});
afterAll(async () => {
  await io?.close();
  t.cleanup();
});

describe('exact reference counts for the cluster inspector', () => {
  it('the image really packs more than 255 compressed clusters into one host cluster', () => {
    expect(Math.max(...packed.map((p) => p.refcount))).toBeGreaterThan(255);
  });

  it("the checker's count saturates there, and the inspector's count is QEMU's refcount exactly", async () => {
    const a = await runCheckPasses(image, {});
    for (const { cluster, refcount } of packed) {
      expect(a.referencesAt(cluster)).toBe(refcount);
      const checked = a.references[cluster]!;
      if (refcount >= 255) expect(checked).toBe(checkerCountCap(image.geo.refcountBits));
      // A budget too small for even one L2 table: the listing stops early, the count does not.
      const r = await clusterReferences(image, cluster, { checked, list: true, budget: 1 });
      expect(r.references).toBe(refcount);
      expect(r.referrers.every((x) => x.kind === 'l2')).toBe(true);
      // A count the checker did not know was walked to the end, so its referrers were listed too.
      if (refcount >= 255) expect(r.referrerCount).toBe(refcount);
      const countOnly = await clusterReferences(image, cluster, { checked, list: false, budget: 1 });
      expect(countOnly.references).toBe(refcount);
    }
  });

  it('through the service: check.run then cluster.describe shows every reference, not 255', async () => {
    const service = new Service({
      kind: 'test',
      samples: [],
      recent: new RecentStore(),
      resolve: async (ref: FileRef) => {
        if (ref.kind !== 'root') throw new ContractError('not-available', 'test host');
        return { path: join(t.dir, ref.path), name: ref.path };
      },
    });
    try {
      const o = await service.call('image.open', { ref: { kind: 'root', path: 'packed.qcow2' } });
      await service.call('check.run', { handle: o.handle });
      const most = packed.reduce((m, p) => (p.refcount > m.refcount ? p : m));
      const d = await service.call('cluster.describe', { handle: o.handle, cluster: most.cluster });
      expect(d.role).toBe(HostRole.Compressed);
      expect(d.refcount).toBe(most.refcount);
      expect(d.references).toBe(most.refcount);
      expect(d.referrerCount).toBe(most.refcount);
    } finally {
      await service.dispose();
    }
  });
});
