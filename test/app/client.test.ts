// The renderer's contract client over the Electron path: a PreloadBridge whose messages cross a
// structured clone (as IPC does) to a Connection of the real service — typed results, typed
// errors, progress routed to its caller, cancel through an AbortSignal, notices.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, qemuIo, tempDir } from '../helpers/qemu.js';
import { Client, preloadPipe } from '../../renderer/src/client/client.js';
import { Service } from '../../engine/service/service.js';
import { RecentStore } from '../../engine/service/recent.js';
import {
  ContractError,
  type ClientMessage,
  type Notice,
  type PreloadBridge,
  type ServerMessage,
} from '../../engine/contract/contract.js';

const t = tempDir('q2d-client-');
afterAll(() => t.cleanup());

function wire(delayMs = 0): { client: Client; service: Service; notify(n: Notice): void } {
  const file = join(t.dir, 'disk.qcow2');
  createQcow2(file, '16M');
  qemuIo(file, ['write -P 0x7e 0 256k']);
  const host = {
    kind: 'electron' as const,
    samples: [],
    recent: new RecentStore(),
    resolve: async () => ({ path: file, name: 'disk.qcow2' }),
  };
  const service = new Service(delayMs ? { ...host, testCheckDelayMs: delayMs } : host);
  const listeners = new Set<(m: ServerMessage) => void>();
  const conn = service.connect((m) => {
    const copy = structuredClone(m);
    queueMicrotask(() => listeners.forEach((l) => l(copy)));
  });
  const bridge: PreloadBridge = {
    contractVersion: 1,
    send: (m: ClientMessage) => conn.receive(structuredClone(m)),
    onMessage: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    registerDrop: async () => 'x',
  };
  return {
    client: new Client(preloadPipe(bridge)),
    service,
    notify: (n) => listeners.forEach((l) => l({ t: 'notice', notice: n })),
  };
}

describe('contract client over the preload pipe', () => {
  it('opens, checks and reads typed results (typed arrays intact)', async () => {
    const { client, service } = wire();
    const opened = await client.call('image.open', { ref: { kind: 'granted', id: 'g1' } });
    expect(opened.overview.virtualSize).toBe(16 * 1024 * 1024);
    const progress: number[] = [];
    const check = await client.call(
      'check.run',
      { handle: opened.handle },
      { onProgress: (p) => progress.push(p.fraction) },
    );
    expect(check.counters.corruptions).toBe(0);
    const map = await client.call('map.host', { handle: opened.handle });
    expect(map.roles).toBeInstanceOf(Uint8Array);
    expect(map.roles.length).toBe(check.hostClusters);
    const loc = await client.call('guest.locate', { handle: opened.handle, guestCluster: 0 });
    const bytes = await client.call('bytes.read', { handle: opened.handle, offset: loc.hostOffset!, length: 4 });
    expect(Array.from(bytes.bytes)).toEqual([0x7e, 0x7e, 0x7e, 0x7e]);
    await service.dispose();
  });

  it('rebuilds errors as ContractError with code and field', async () => {
    const { client, service } = wire();
    const err = await client.call('cluster.describe', { handle: 'abcdefgh12', cluster: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContractError);
    expect((err as ContractError).code).toBe('not-found');
    const bad = await client
      .call('bytes.read', { handle: 'abcdefgh12', offset: 0, length: -4 } as never)
      .catch((e: unknown) => e);
    expect((bad as ContractError).field).toBe('args.length');
    await service.dispose();
  });

  it('reports progress to the caller and cancels through an AbortSignal', async () => {
    const { client, service } = wire(5000);
    const opened = await client.call('image.open', { ref: { kind: 'granted', id: 'g1' } });
    const ctl = new AbortController();
    const seen: string[] = [];
    const job = client.call(
      'check.run',
      { handle: opened.handle },
      { signal: ctl.signal, onProgress: (p) => seen.push(p.stage) },
    );
    await new Promise((r) => setTimeout(r, 200));
    ctl.abort();
    const err = await job.catch((e: unknown) => e);
    expect((err as ContractError).code).toBe('cancelled');
    expect(seen.length).toBeGreaterThan(0);
    // The connection stays usable.
    expect((await client.call('image.overview', { handle: opened.handle })).name).toBe('disk.qcow2');
    await service.dispose();
  });

  it('delivers notices (menu, open requests) to listeners', async () => {
    const { client, notify, service } = wire();
    const got: Notice[] = [];
    const off = client.onNotice((n) => got.push(n));
    notify({ kind: 'menu', command: 'open' });
    notify({ kind: 'open', ref: { kind: 'recent', id: 'r1' } });
    off();
    notify({ kind: 'menu', command: 'close' });
    expect(got).toEqual([
      { kind: 'menu', command: 'open' },
      { kind: 'open', ref: { kind: 'recent', id: 'r1' } },
    ]);
    await service.dispose();
  });
});
