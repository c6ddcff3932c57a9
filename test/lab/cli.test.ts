// `qcow2-doctor lab` as a user runs it (the CLI is built by `npm test` before the tests run).
import { afterAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { qemuCheckHuman, run, tempDir } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'qcow2-doctor.cjs');
const t = tempDir('q2d-labcli-');
afterAll(t.cleanup);

describe('qcow2-doctor lab', () => {
  it('prints the table, dumps crash states QEMU accepts, exits 0 on the ordered path', () => {
    const dump = join(t.dir, 'states');
    const r = run('node', [
      BIN,
      'lab',
      '--workload',
      'zero',
      'discard',
      '--budget',
      '60',
      '--subsets',
      '4',
      '--torn',
      '2',
      '--dump-states',
      dump,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/workload\s+states\s+corruptions\s+data mismatches/);
    expect(r.stdout).toMatch(/^zero\s+\d+\s+0\s+0\s/m);
    expect(r.stdout).toMatch(/^discard\s+\d+\s+0\s+0\s/m);
    const files = readdirSync(dump);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect([0, 3]).toContain(qemuCheckHuman(join(dump, f)).status);
  });

  it('the negative control reports corruption and exits 1', () => {
    const r = run('node', [
      BIN,
      'lab',
      '--unordered',
      '--workload',
      'allocate',
      '--budget',
      '60',
      '--subsets',
      '4',
      '--torn',
      '2',
    ]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^allocate\s+\d+\s+[1-9]\d*\s/m);
    expect(r.stdout).toMatch(/refcount=0 reference/);
  });

  it('refuses bad arguments in one line', () => {
    const r = run('node', [BIN, 'lab', '--workload', 'nope']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown workload 'nope'/);
  });
});
