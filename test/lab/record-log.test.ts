// `lab --record-log`: our writer's workloads written as dm-log-writes logs that `lab --replay`
// (or any dm-log-writes tool) can crash-test: the ordered write path replays clean, the unordered
// one (no barriers) is caught from its log alone.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { CrashStateBuilder } from '../../engine/lab/crash-states.js';
import { readDmLog } from '../../engine/lab/dm-log.js';
import { SCENARIOS } from '../check/scenarios.js';
import { run, tempDir } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const t = tempDir('q2d-reclog-');
afterAll(t.cleanup);

describe('lab --record-log', () => {
  it('records replayable logs of our own writes', async () => {
    const dir = join(t.dir, 'ordered');
    const r = run('node', [BIN, 'lab', '--record-log', dir, '--workload', 'allocate']);
    expect(r.status, r.stderr).toBe(0);
    const log = join(dir, 'allocate.log');
    const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
    expect(dm.log.filter((e) => e.kind === 'flush').length).toBeGreaterThan(3);
    const replay = run('node', [
      BIN,
      'lab',
      '--replay',
      log,
      '--base',
      join(dir, 'allocate.base.qcow2'),
      '--budget',
      '20',
    ]);
    expect(replay.status, replay.stdout + replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/^corrupt\s+0$/m);
  });

  it('the unordered write path, recorded, is caught by the replay', () => {
    const dir = join(t.dir, 'unordered');
    expect(run('node', [BIN, 'lab', '--record-log', dir, '--workload', 'allocate', '--unordered']).status).toBe(0);
    const replay = run('node', [
      BIN,
      'lab',
      '--replay',
      join(dir, 'allocate.log'),
      '--base',
      join(dir, 'allocate.base.qcow2'),
      '--budget',
      '10',
    ]);
    expect(replay.status, replay.stdout).toBe(1);
    expect(replay.stdout).toMatch(/FAILED state: /);
    expect(replay.stdout).toMatch(/minimal: /);
  });
});

describe('check -r --record-log', () => {
  it('repairs a damaged qemu-img image, logs every write, and every crash state of the log replays consistent', async () => {
    const f = SCENARIOS.find((x) => x.name === 'leak')!.build(t.dir);
    const before = new Uint8Array(readFileSync(f));
    const log = join(t.dir, 'repair.log');
    const r = run('node', [BIN, 'check', '-r', 'all', '--no-journal', '--record-log', log, f]);
    // The leaked cluster held guest data no entry places: freed, and said to be lost (exit 4).
    expect(r.status, r.stdout + r.stderr).toBe(4);
    expect(r.stderr).toMatch(
      /write log: .*repair\.log \(\d+ entries\); replay and crash-test with: qcow2-doctor lab --replay/,
    );
    // The base copy is the image before the repair; base + the whole log is the repaired file.
    const base = new Uint8Array(readFileSync(`${log}.base.qcow2`));
    expect(Buffer.from(base).equals(Buffer.from(before))).toBe(true);
    const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
    expect(dm.log.some((e) => e.kind === 'write')).toBe(true);
    expect(dm.log.some((e) => e.kind === 'flush')).toBe(true);
    const all = dm.log.map((_, i) => i).filter((i) => dm.log[i]!.kind !== 'flush');
    const end = await new CrashStateBuilder(base, dm.log).build({
      kind: 'prefix',
      crashAt: dm.log.length,
      lastFlush: -1,
      applied: all,
    });
    expect(Buffer.from(end.snapshot()).equals(readFileSync(f))).toBe(true);

    const replay = run('node', [BIN, 'lab', '--replay', log, '--base', `${log}.base.qcow2`, '--budget', '20']);
    expect(replay.status, replay.stdout + replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/^states tried\s+(\d+) of \1$/m);
    expect(replay.stdout).toMatch(/^corrupt\s+0$/m);
    expect(replay.stdout).toMatch(/^data mismatches\s+0$/m);
  });

  it('never overwrites a log or base, and refuses --dry-run, in one line', () => {
    const sub = join(t.dir, 'second');
    mkdirSync(sub);
    const f = SCENARIOS.find((x) => x.name === 'leak')!.build(sub);
    const log = join(t.dir, 'again.log');
    // -r all: the leaked cluster still holds data, which -r leaks keeps (and says so, exit 3).
    const first = run('node', [BIN, 'check', '-r', 'all', '--no-journal', '--record-log', log, f]);
    expect(first.status, first.stderr).toBe(4);
    const again = run('node', [BIN, 'check', '-r', 'all', '--no-journal', '--record-log', log, f]);
    expect(again.status).toBe(1);
    expect(again.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/--record-log: .*again\.log already exists/),
    ]);
    const dry = run('node', [BIN, 'check', '-r', 'all', '--dry-run', '--record-log', join(t.dir, 'dry.log'), f]);
    expect(dry.status).toBe(1);
    expect(dry.stderr).toMatch(/--record-log goes with a repair that writes/);
    expect(existsSync(join(t.dir, 'dry.log'))).toBe(false);
  });
});

describe('strip and salvage -f qcow2 --record-log', () => {
  for (const cmd of ['strip', 'salvage'] as const) {
    it(`${cmd}: the new file's writes replay; states before its final flush are counted unpublished`, async () => {
      const sub = join(t.dir, `new-${cmd}`);
      mkdirSync(sub);
      const f = SCENARIOS.find((x) => x.name === 'leak')!.build(sub);
      const out = join(sub, 'out.qcow2');
      const log = join(sub, 'out.log');
      const args = cmd === 'strip' ? [f, out] : ['-f', 'qcow2', f, out];
      const r = run('node', [BIN, cmd, ...args, '--record-log', log]);
      // Salvage reports the leaked cluster's data lost: no entry says where it belongs (exit 2).
      expect(r.status, r.stdout + r.stderr).toBe(cmd === 'strip' ? 0 : 2);
      expect(readFileSync(`${log}.base.qcow2`).length).toBe(0);
      const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
      expect(dm.log.at(-1)?.kind).toBe('flush');
      const all = dm.log.map((_, i) => i).filter((i) => dm.log[i]!.kind !== 'flush');
      const end = await new CrashStateBuilder(new Uint8Array(0), dm.log).build({
        kind: 'prefix',
        crashAt: dm.log.length,
        lastFlush: -1,
        applied: all,
      });
      expect(Buffer.from(end.snapshot()).equals(readFileSync(out))).toBe(true);
      const replay = run('node', [BIN, 'lab', '--replay', log, '--base', `${log}.base.qcow2`, '--budget', '10']);
      expect(replay.status, replay.stdout + replay.stderr).toBe(0);
      expect(replay.stdout).toMatch(/^unpublished\s+[1-9]\d* \(a new file/m);
      expect(replay.stdout).toMatch(/^corrupt\s+0$/m);
    });
  }

  it('salvage refuses --record-log with a raw output, in one line', () => {
    const r = run('node', [
      BIN,
      'salvage',
      join(t.dir, 'x.qcow2'),
      join(t.dir, 'y.raw'),
      '--record-log',
      join(t.dir, 'y.log'),
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--record-log goes with -f qcow2/);
  });
});
