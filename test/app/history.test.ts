// The write-history handlers on a log QEMU recorded through blklogwrites: the timeline names the
// clusters each write touches by role, the map after the last entry is the map of QEMU's own final
// image, the crash states along the timeline judge clean, and the same log without its flushes is
// caught with the entries that cause it. Hostile input is refused in one line naming the field.
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelToken } from '../../engine/base/task-control.js';
import type { FileRef } from '../../engine/contract/contract.js';
import { ContractError } from '../../engine/contract/errors.js';
import { HostRole } from '../../engine/contract/roles.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { encodeDmLog, readDmLog } from '../../engine/lab/dm-log.js';
import { RecentStore } from '../../engine/service/recent.js';
import { Service } from '../../engine/service/service.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-history-');
const outside = tempDir('q2d-history-outside-');
let service: Service;

const QEMU_OPS = [
  'write -P 0x11 0 16k',
  'write -P 0x12 2M 8k',
  'flush',
  'discard 0 8k',
  'write -z 1M 8k',
  'write -P 0x13 3M 4k',
];

beforeAll(async () => {
  const base = join(t.dir, 'base.qcow2');
  const disk = join(t.dir, 'disk.qcow2');
  const log = join(t.dir, 'log.bin');
  createQcow2(base, '4M', { cluster_size: 4096 });
  copyFileSync(base, disk);
  qemuImg('create', '-q', '-f', 'raw', log, '16M');
  const r = run('qemu-io', [
    '--image-opts',
    ...QEMU_OPS.flatMap((c) => ['-c', c]),
    `driver=qcow2,file.driver=blklogwrites,file.file.filename=${disk},file.log.filename=${log}`,
  ]);
  if (r.status !== 0) throw new Error(r.stderr);
  // Negative control: the same log with every flush removed (a cache that ignores flushes).
  const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
  writeFileSync(join(t.dir, 'noflush.bin'), encodeDmLog(dm.log.filter((e) => e.kind !== 'flush')));
  writeFileSync(join(t.dir, 'notalog.bin'), Buffer.alloc(4096, 0x41));
  // A link inside the root to a log outside it, and a folder named like a log.
  writeFileSync(join(outside.dir, 'log.bin'), readFileSync(log));
  symlinkSync(join(outside.dir, 'log.bin'), join(t.dir, 'escape.bin'));
  mkdirSync(join(t.dir, 'folder.bin'));
  // A base past the 64 MiB a history holds in memory (sparse: nothing is written).
  writeFileSync(join(t.dir, 'huge.qcow2'), '');
  truncateSync(join(t.dir, 'huge.qcow2'), 65 * 2 ** 20);
  // Two qemu-io sessions logging into one log (log-append): the image between them is known.
  const d2 = join(t.dir, 'two.qcow2');
  copyFileSync(base, d2);
  const opts2 = `driver=qcow2,file.driver=blklogwrites,file.file.filename=${d2},file.log.filename=${join(t.dir, 'two.bin')}`;
  qemuImg('create', '-q', '-f', 'raw', join(t.dir, 'two.bin'), '16M');
  for (const [ops, append] of [
    [['write -P 0x21 0 12k', 'write -P 0x22 1M 4k'], ''],
    [['write -P 0x23 8k 8k', 'discard 1M 4k', 'write -P 0x24 3M 4k'], ',file.log-append=on'],
  ] as const) {
    const r2 = run('qemu-io', ['--image-opts', ...ops.flatMap((c) => ['-c', c]), opts2 + append]);
    if (r2.status !== 0) throw new Error(r2.stderr);
    if (!append) {
      copyFileSync(d2, join(t.dir, 'two-mid.qcow2'));
      firstSession = (await readDmLog(new MemoryIO(new Uint8Array(readFileSync(join(t.dir, 'two.bin')))))).log.length;
    }
  }
  service = new Service({
    kind: 'test',
    samples: [],
    recent: new RecentStore(),
    root: t.dir,
    resolve: async (ref: FileRef) => {
      if (ref.kind !== 'root') throw new ContractError('not-available', 'test host');
      return { path: join(t.dir, ref.path), name: ref.path };
    },
  });
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
  outside.cleanup();
});

let firstSession = 0;
const root = (path: string): FileRef => ({ kind: 'root', path });
const openLog = (log: string) => service.call('history.open', { log: root(log), base: root('base.qcow2') });

async function refusal(p: Promise<unknown>): Promise<ContractError> {
  try {
    await p;
  } catch (e) {
    return e as ContractError;
  }
  throw new Error('accepted');
}

describe('write history', () => {
  it('opens a QEMU log: every entry, its epoch, the clusters it touches by role', async () => {
    const h = await openLog('log.bin');
    const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(join(t.dir, 'log.bin')))));
    expect(h.entries.length).toBe(dm.log.length);
    expect(h.entries.map((e) => e.source)).toEqual(dm.source);
    expect(h.clusterSize).toBe(4096);
    const kinds = new Set(h.entries.map((e) => e.kind));
    for (const k of ['write', 'flush', 'discard', 'zero'] as const) expect(kinds).toContain(k);
    expect(h.flushes).toBe(h.entries.filter((e) => e.kind === 'flush').length);
    // Epochs count the flushes before an entry.
    let epoch = 0;
    for (const e of h.entries) {
      expect(e.epoch).toBe(epoch);
      if (e.kind === 'flush') epoch++;
    }
    // The guest's 16 KiB of 0x11 lands in four data clusters; QEMU also wrote L2 tables and refcount blocks.
    const data = h.entries.find((e) => e.kind === 'write' && e.length === 16384)!;
    expect(data.touched).toEqual([{ first: expect.any(Number), count: 4, role: HostRole.Data }]);
    const roles = new Set(h.entries.flatMap((e) => e.touched.map((r) => r.role)));
    for (const r of [HostRole.L1, HostRole.L2, HostRole.RefcountBlock, HostRole.Data]) expect(roles).toContain(r);
    // QEMU orders its metadata: the data write, then a flush, then the L2 update that maps it.
    const l2 = h.entries.findIndex((e, i) => i > data.index && e.touched.some((r) => r.role === HostRole.L2));
    expect(l2).toBeGreaterThan(data.index);
    expect(h.entries[l2]!.epoch).toBeGreaterThan(data.epoch);
    await service.call('history.close', { handle: h.handle });
  });

  it('the map after the last entry is the map of the image QEMU left; before the first, the base', async () => {
    const h = await openLog('log.bin');
    const img = await service.call('image.open', { ref: root('disk.qcow2') });
    await service.call('check.run', { handle: img.handle });
    const final = await service.call('map.host', { handle: img.handle });
    const end = await service.call('history.stateAt', { handle: h.handle, prefix: h.entries.length });
    expect(end.fileSize).toBe(readFileSync(join(t.dir, 'disk.qcow2')).length);
    expect(Array.from(end.roles)).toEqual(Array.from(final.roles));
    expect(end.counters.corruptions).toBe(0);
    const start = await service.call('history.stateAt', { handle: h.handle, prefix: 0 });
    expect(start.fileSize).toBe(readFileSync(join(t.dir, 'base.qcow2')).length);
    expect(start.legend[HostRole.Data] ?? 0).toBe(0);
    expect(end.legend[HostRole.Data]).toBeGreaterThan(0);
  });

  it('the map between two logged QEMU sessions is the map of the image the first one left', async () => {
    const h = await openLog('two.bin');
    expect(firstSession).toBeGreaterThan(3);
    expect(h.entries.length).toBeGreaterThan(firstSession);
    for (const [file, prefix] of [
      ['two-mid.qcow2', firstSession],
      ['two.qcow2', h.entries.length],
    ] as const) {
      const img = await service.call('image.open', { ref: root(file) });
      await service.call('check.run', { handle: img.handle });
      const want = await service.call('map.host', { handle: img.handle });
      const got = await service.call('history.stateAt', { handle: h.handle, prefix });
      expect(Array.from(got.roles), file).toEqual(Array.from(want.roles));
      expect(got.fileSize).toBe(readFileSync(join(t.dir, file)).length);
      await service.call('image.close', { handle: img.handle });
    }
  });

  it('judges the crash states of QEMU log: none corrupt; explains a state', async () => {
    const h = await openLog('log.bin');
    const j = await service.call('history.judge', { handle: h.handle, budget: 120 });
    expect(j.complete).toBe(true);
    expect(j.judged).toBe(j.planned);
    expect(j.states.filter((s) => s.kind === 'prefix').length).toBe(h.entries.length + 1);
    expect(j.states.some((s) => s.kind !== 'prefix')).toBe(true);
    expect(j.counts.corrupt).toBe(0);
    expect(j.counts.consistent + j.counts.leaky).toBe(j.judged);
    const x = await service.call('history.explain', { handle: h.handle, state: j.states.length - 1 });
    expect(x.verdict).not.toBe('corrupt');
    expect(x.entries).toMatch(/^\d/);
  });

  it('negative control: without its flushes the log is caught, with the entries that cause it', async () => {
    const h = await openLog('noflush.bin');
    expect(h.flushes).toBe(0);
    const j = await service.call('history.judge', { handle: h.handle, budget: 60, seed: 1 });
    const bad = j.states.filter((s) => s.verdict === 'corrupt');
    expect(bad.length).toBeGreaterThan(0);
    expect(bad[0]!.summary.length).toBeGreaterThan(0);
    const x = await service.call('history.explain', { handle: h.handle, state: bad[0]!.id });
    expect(x.verdict).toBe('corrupt');
    expect(x.problems.length).toBeGreaterThan(0);
    expect(x.cause.length).toBeGreaterThan(0);
    expect(x.cause.length).toBeLessThanOrEqual(bad[0]!.landed);
    expect(x.causeText[0]).toMatch(/^#\d+ (write|discard)/);
    // The reduced cause fails on its own: every entry of it is one that landed in the failing state.
    for (const i of x.cause) expect(i).toBeLessThan(bad[0]!.crashAt);
  });

  it('judging stops at a cancel', async () => {
    const h = await openLog('log.bin');
    const cancel = new CancelToken();
    let seen = 0;
    const p = service.call(
      'history.judge',
      { handle: h.handle, budget: 120 },
      {
        cancel,
        progress: () => {
          if (++seen === 3) cancel.cancel();
        },
      },
    );
    const e = await refusal(p);
    expect(e.message).toBe('cancelled');
    expect(seen).toBeLessThan(10);
  });

  it('records a lab workload of our own writer and judges it', async () => {
    const names = await service.call('history.workloads', {});
    expect(names).toContain('allocate');
    const h = await service.call('history.record', { workload: 'allocate' });
    expect(h.entries.length).toBeGreaterThan(10);
    const j = await service.call('history.judge', { handle: h.handle, budget: 120 });
    expect(j.complete).toBe(true);
    expect(j.counts.corrupt).toBe(0);
  });

  it('refuses hostile input in one line naming the field and value', async () => {
    const h = await openLog('log.bin');
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => openLog('notalog.bin'), /bad magic.*superblock\.magic/],
      [() => openLog('escape.bin'), /escape\.bin is outside the folder it must stay in/],
      [() => openLog('folder.bin'), /folder\.bin is not a regular file/],
      [
        () => service.call('history.open', { log: root('log.bin'), base: root('huge.qcow2') }),
        /args\.base is 68157440 bytes, more than the 67108864 a history may hold/,
      ],
      [() => service.call('history.open', { log: root('log.bin') } as never), /args\.base/],
      [() => service.call('history.stateAt', { handle: h.handle, prefix: -1 }), /args\.prefix must be an integer/],
      [
        () => service.call('history.stateAt', { handle: h.handle, prefix: 10_000 }),
        /args\.prefix 10000 is past the end/,
      ],
      [() => service.call('history.stateAt', { handle: 'nosuchhandle', prefix: 0 }), /no open history/],
      [() => service.call('history.judge', { handle: h.handle, budget: 0 }), /args\.budget must be at least 1/],
      [() => service.call('history.judge', { handle: h.handle, budget: 100_000 }), /args\.budget must be an integer/],
      [() => service.call('history.explain', { handle: h.handle, state: 5 }), /no judged state 5/],
      [() => service.call('history.record', { workload: '../x' }), /args\.workload must be matching/],
      [() => service.call('history.record', { workload: 'nope' }), /no lab workload named nope/],
    ];
    for (const [p, re] of cases) {
      const e = await refusal(p());
      expect(e.message).toMatch(re);
      expect(e.message).not.toContain('\n');
    }
  });
});
