// What the write-history timeline draws, from a real QEMU log opened and judged by the service:
// each entry's colour is the most telling role it touches, every judged prefix has its verdict cell,
// each epoch shows its worst reordered state, and failing states are listed worst first.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FileRef } from '../../engine/contract/contract.js';
import { HostRole } from '../../engine/contract/roles.js';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { encodeDmLog, readDmLog } from '../../engine/lab/dm-log.js';
import { RecentStore } from '../../engine/service/recent.js';
import { Service } from '../../engine/service/service.js';
import { entryRole, failing, strips } from '../../renderer/src/views/history/timeline.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-history-tl-');
const service = new Service({
  kind: 'test',
  samples: [],
  recent: new RecentStore(),
  resolve: async (ref: FileRef) => ({ path: join(t.dir, (ref as { path: string }).path), name: 'x' }),
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
});

async function record(): Promise<void> {
  createQcow2(join(t.dir, 'base.qcow2'), '4M', { cluster_size: 4096 });
  copyFileSync(join(t.dir, 'base.qcow2'), join(t.dir, 'disk.qcow2'));
  qemuImg('create', '-q', '-f', 'raw', join(t.dir, 'log.bin'), '16M');
  const r = run('qemu-io', [
    '--image-opts',
    ...['write -P 0x31 0 32k', 'flush', 'write -P 0x32 2M 4k'].flatMap((c) => ['-c', c]),
    `driver=qcow2,file.driver=blklogwrites,file.file.filename=${join(t.dir, 'disk.qcow2')},file.log.filename=${join(t.dir, 'log.bin')}`,
  ]);
  expect(r.status, r.stderr).toBe(0);
  const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(join(t.dir, 'log.bin')))));
  writeFileSync(join(t.dir, 'noflush.bin'), encodeDmLog(dm.log.filter((e) => e.kind !== 'flush')));
}

describe('write-history timeline strips', () => {
  it('colours, verdict cells and the failing list of a judged QEMU log and its flushless control', async () => {
    await record();
    const h = await service.call('history.open', {
      log: { kind: 'root', path: 'log.bin' },
      base: { kind: 'root', path: 'base.qcow2' },
    });
    const data = h.entries.find((e) => e.kind === 'write' && e.length === 32768)!;
    expect(entryRole(data)).toBe(HostRole.Data);
    expect(h.entries.some((e) => entryRole(e) === HostRole.L2)).toBe(true);
    expect(entryRole(h.entries.find((e) => e.kind === 'flush')!)).toBeNull();
    const before = strips(h.entries, null);
    expect(before.prefix.filter(Boolean)).toEqual([]);
    expect([...before.epochSpan.keys()]).toEqual([...new Set(h.entries.map((e) => e.epoch))]);

    const j = await service.call('history.judge', { handle: h.handle, budget: 120 });
    expect(j.complete).toBe(true);
    const s = strips(h.entries, j);
    for (let p = 0; p <= h.entries.length; p++) expect(s.prefix[p]?.crashAt).toBe(p);
    for (const v of s.epoch.values()) expect(v.kind).not.toBe('prefix');
    expect(failing(j).every((x) => x.verdict !== 'corrupt')).toBe(true);

    const bad = await service.call('history.open', {
      log: { kind: 'root', path: 'noflush.bin' },
      base: { kind: 'root', path: 'base.qcow2' },
    });
    const jb = await service.call('history.judge', { handle: bad.handle, budget: 120 });
    const list = failing(jb);
    expect(list[0]!.verdict).toBe('corrupt');
    const ranks = list.map((x) => ({ consistent: 0, leaky: 1, corrupt: 2 })[x.verdict]);
    expect(ranks).toEqual([...ranks].sort((a, b) => b - a));
    // One epoch without flushes: its worst reordered state is the corrupt one.
    expect(strips(bad.entries, jb).epoch.get(0)?.verdict).toBe('corrupt');
  });
});
