// `lab --record-log`: our writer's workloads written as dm-log-writes logs that `lab --replay`
// (or any dm-log-writes tool) can crash-test: the ordered write path replays clean, the unordered
// one (no barriers) is caught from its log alone.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { readDmLog } from '../../engine/lab/dm-log.js';
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
