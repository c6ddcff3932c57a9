// One client's hostile image cannot stall another client: the check runs in a worker thread with a
// time budget, so the thread that answers every client stays free while it runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, qemuIo, tempDir } from '../helpers/qemu.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { Service } from '../../engine/service/service.js';

const root = tempDir('q2d-responsive-');
let service: Service;

beforeAll(async () => {
  // Many small clusters: a check long enough to answer other requests in the middle of it.
  createQcow2(join(root.dir, 'heavy.qcow2'), '48M', { cluster_size: 512 });
  qemuIo(join(root.dir, 'heavy.qcow2'), ['write -P 0x33 0 48M']);
  service = new Service(await createServeHost(root.dir));
}, 120_000);

afterAll(async () => {
  await service.dispose();
  root.cleanup();
});

describe('serve stays responsive', () => {
  it('serve answers another client while one client checks a heavy image', async () => {
    const { handle } = (await service.call('image.open', { ref: { kind: 'root', path: 'heavy.qcow2' } })) as {
      handle: string;
    };
    const order: string[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const check = service.call('check.run', { handle }).then((r) => {
      order.push('check');
      return r;
    });
    // Another client's requests, sent while the check runs, are answered before it ends.
    for (let i = 0; i < 3; i++) {
      await service.call('app.hello', {});
      order.push('hello');
    }
    const summary = (await check) as { counters: { corruptions: number }; hostClusters: number };
    const ticksDuringCheck = ticks;
    clearInterval(timer);
    expect(order).toEqual(['hello', 'hello', 'hello', 'check']);
    expect(summary.counters.corruptions).toBe(0);
    expect(summary.hostClusters).toBeGreaterThan(98_000);
    // The event loop kept turning during the check (timers ran): it was not on this thread.
    expect(ticksDuringCheck).toBeGreaterThan(2);
  }, 120_000);

  it('a check past its time budget is stopped, and the server goes on', async () => {
    const host = await createServeHost(root.dir);
    host.checkBudgetMs = 1;
    const s = new Service(host);
    try {
      const { handle } = (await s.call('image.open', { ref: { kind: 'root', path: 'heavy.qcow2' } })) as {
        handle: string;
      };
      await expect(s.call('check.run', { handle })).rejects.toThrow(/longer than its budget .* and was stopped/);
      expect(await s.call('app.hello', {})).toBeDefined();
    } finally {
      await s.dispose();
    }
  }, 120_000);
});
