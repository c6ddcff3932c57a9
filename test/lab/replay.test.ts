// `lab --replay`: a log recorded by hand with QEMU's blklogwrites judges clean; the same log with
// its flushes removed (a cache that ignores flushes) must fail, reduced to a few entries.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { readDmLog } from '../../engine/lab/dm-log.js';
import { replayLog } from '../../engine/lab/replay.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const t = tempDir('q2d-replay-');
afterAll(t.cleanup);

const base = join(t.dir, 'base.qcow2');
const disk = join(t.dir, 'disk.qcow2');
const log = join(t.dir, 'log.bin');
createQcow2(base, '4M', { cluster_size: 4096 });
copyFileSync(base, disk);
qemuImg('create', '-q', '-f', 'raw', log, '16M');
const recorded = run('qemu-io', [
  '--image-opts',
  ...['write -P 0x11 0 16k', 'write -P 0x12 2M 8k', 'flush', 'discard 0 8k', 'write -P 0x13 1M 4k'].flatMap((c) => [
    '-c',
    c,
  ]),
  `driver=qcow2,file.driver=blklogwrites,file.file.filename=${disk},file.log.filename=${log}`,
]);

describe('lab --replay', () => {
  it('judges a hand-recorded QEMU log clean, every state tried', () => {
    expect(recorded.status, recorded.stderr).toBe(0);
    const r = run('node', [BIN, 'lab', '--replay', log, '--base', base, '--budget', '60', '--subsets', '10']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^corrupt\s+0$/m);
    expect(r.stdout).toMatch(/^data mismatches\s+0$/m);
    const m = /^states tried\s+(\d+) of (\d+)$/m.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(m![2]);
    expect(Number(m![1])).toBeGreaterThan(30);
    expect(r.stdout).not.toMatch(/FAILED/);
  });

  it('negative control: the log without its flushes fails, reduced to the entries that matter', async () => {
    const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
    const keep = dm.log.map((_, i) => i).filter((i) => dm.log[i]!.kind !== 'flush');
    const rep = await replayLog(
      { base: new Uint8Array(readFileSync(base)), log: keep.map((i) => dm.log[i]!), source: keep },
      { seed: 1, subsetsPerEpoch: 60, tornPerEpoch: 10, continueEvery: 0, budgetSeconds: 8, maxFailures: 1 },
    );
    expect(rep.flushes).toBe(0);
    expect(rep.corrupt).toBeGreaterThan(0);
    const f = rep.failures[0]!;
    expect(f.problems.join('\n')).toMatch(/refcount=0 reference|exceeds the end of the file/);
    expect(f.minimalEntries.length).toBeGreaterThan(0);
    expect(f.minimalEntries.length).toBeLessThan(keep.length / 2);
    // The reduced state fails on its own.
    expect(f.minimal).toMatch(/^nothing durable; in flight and landed: /);
  });

  it('refuses bad input in one line', () => {
    const noBase = run('node', [BIN, 'lab', '--replay', log]);
    expect(noBase.status).toBe(1);
    expect(noBase.stderr).toMatch(/--replay needs --base/);
    const bad = join(t.dir, 'bad.bin');
    const b = Buffer.from(readFileSync(log));
    b.writeBigUInt64LE(7n, 0);
    writeFileSync(bad, b);
    const r = run('node', [BIN, 'lab', '--replay', bad, '--base', base]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/superblock\.magic = 0x7/);
  });
});
