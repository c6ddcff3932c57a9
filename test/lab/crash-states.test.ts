import { describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { RecordingIO } from '../../engine/io/recording-io.js';
import { FaultIO, InjectedIOError, CrashedError } from '../../engine/io/fault-io.js';
import { enumerateCrashStates, materializeCrashState, sectorPieces } from '../../engine/lab/crash-states.js';

const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('recording I/O and crash states', () => {
  it('records writes, flushes and events in order and builds every prefix', async () => {
    const base = fill(4096, 0);
    const rec = new RecordingIO(new MemoryIO(base));
    await rec.write(0, fill(512, 1));
    rec.event('l2_update');
    await rec.write(512, fill(1024, 2));
    await rec.flush();
    await rec.write(0, fill(512, 3));
    await rec.write(4096, fill(512, 4));
    expect(rec.log.map((e) => e.kind)).toEqual(['write', 'write', 'flush', 'write', 'write']);
    expect(rec.events).toEqual([{ at: 1, name: 'l2_update' }]);
    const states = enumerateCrashStates(rec.log, { seed: 7 });
    const prefixes = states.filter((s) => s.kind === 'prefix');
    expect(prefixes).toHaveLength(rec.log.length + 1);
    // Prefix 4: everything up to the flush durable, then the first volatile write.
    const p4 = await materializeCrashState(base, rec.log, prefixes[4]!);
    const b = p4.snapshot();
    expect(b[0]).toBe(3);
    expect(b[600]).toBe(2);
    expect(b.length).toBe(4096);
    const p5 = (await materializeCrashState(base, rec.log, prefixes[5]!)).snapshot();
    expect(p5.length).toBe(4608);
    expect(p5[4096]).toBe(4);
  });

  it('volatile subsets never drop durable writes, torn writes land per sector', async () => {
    const base = fill(8192, 0);
    const rec = new RecordingIO(new MemoryIO(base));
    await rec.write(0, fill(512, 9));
    await rec.flush();
    for (let i = 0; i < 6; i++) await rec.write(512 + i * 1024, fill(1024, 10 + i));
    const states = enumerateCrashStates(rec.log, { seed: 3, subsetsPerEpoch: 20, tornPerEpoch: 20 });
    const torn = states.filter((s) => s.kind === 'torn');
    expect(torn.length).toBeGreaterThan(5);
    expect(states.filter((s) => s.kind === 'subset').length).toBeGreaterThan(5);
    for (const s of states) {
      const b = (await materializeCrashState(base, rec.log, s)).snapshot();
      if (s.crashAt > 1) expect(b[0]).toBe(9);
      for (let i = 0; i < 6; i++) {
        for (const sec of [0, 1]) {
          const v = b[512 + i * 1024 + sec * 512]!;
          // Each sector holds old (0) or new content, never anything else, and is uniform.
          expect([0, 10 + i]).toContain(v);
          expect(b.subarray(512 + i * 1024 + sec * 512, 1024 + i * 1024 + sec * 512).every((x) => x === v)).toBe(true);
        }
      }
    }
    // Torn: exactly some but not all sectors of the torn write landed.
    const t = torn[0]!;
    const e = rec.log[t.torn!.index]!;
    expect(e.kind).toBe('write');
    if (e.kind === 'write') {
      const n = sectorPieces(e.offset, e.data.length).length;
      expect(t.torn!.pieces.length).toBeGreaterThan(0);
      expect(t.torn!.pieces.length).toBeLessThan(n);
    }
    // Same seed, same states.
    expect(enumerateCrashStates(rec.log, { seed: 3, subsetsPerEpoch: 20, tornPerEpoch: 20 })).toEqual(states);
  });

  it('splits writes at absolute sector boundaries', () => {
    expect(sectorPieces(500, 600)).toEqual([
      [0, 12],
      [12, 524],
      [524, 600],
    ]);
  });

  it('fault backend fails the request after an armed event (once) or crashes for good', async () => {
    const mem = new MemoryIO(fill(1024, 0));
    const f = new FaultIO(mem, [{ event: 'l2_update', errno: 'ENOSPC' }]);
    await f.write(0, fill(1, 1));
    f.event('l2_update');
    await expect(f.write(1, fill(1, 2))).rejects.toBeInstanceOf(InjectedIOError);
    await f.write(2, fill(1, 3)); // once: the next request succeeds
    f.setRules([{ event: 'l1_update', action: 'crash' }]);
    f.event('l1_update');
    await expect(f.flush()).rejects.toBeInstanceOf(CrashedError);
    await expect(f.write(3, fill(1, 4))).rejects.toBeInstanceOf(CrashedError);
    expect(Array.from(mem.snapshot().subarray(0, 4))).toEqual([1, 0, 3, 0]);
  });
});
