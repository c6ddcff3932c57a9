// `qcow2-doctor check` end to end (built CLI) against `qemu-img check`: stdout byte for byte,
// stderr lines, exit codes, JSON key order, open errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, patchU32, qemuCheck, qemuCheckHuman, run, tempDir } from '../helpers/qemu.js';
import { SCENARIOS } from './scenarios.js';

const tmp = tempDir('q2d-cli-');
afterAll(() => tmp.cleanup());
beforeAll(() => {
  if (!existsSync('dist/engine/cli/main.js')) run('npx', ['tsc', '-p', 'tsconfig.engine.json']);
});

/** Run the built CLI. dist/ can be mid-rebuild when teammates compile in the same tree: retry then. */
const doctor = (...args: string[]) => {
  for (let attempt = 0; ; attempt++) {
    const r = run('node', ['bin/qcow2-doctor.cjs', 'check', ...args]);
    if (attempt < 3 && /does not provide an export named|Cannot find module|SyntaxError/.test(r.stderr)) continue;
    return r;
  }
};
const asQemu = (stderr: string) => stderr.replaceAll('qcow2-doctor: ', 'qemu-img: ');

/** Scenarios whose leaked clusters still hold content (guest data, or a bitmap's that QEMU dropped). */
const ORPHANED_DATA = new Set([
  'leak',
  'cross-link-data',
  'refcount-overflow-bits-1',
  'bitmaps-autoclear-cleared',
  'data-beyond-eof',
]);

describe('qcow2-doctor check vs qemu-img check', () => {
  for (const name of [
    'clean-base',
    'leak',
    'cross-link-data',
    'refblock-unaligned',
    'clean-compressed',
    'lazy-refcounts-crash',
    'snapshot-count-too-large',
    'snapshot-extra-data-too-large',
    'refcount-overflow-bits-1',
    'bitmap-directory-type-invalid',
    'bitmaps-autoclear-cleared',
    'bitmap-table-entry-invalid-in-use',
    'data-beyond-eof',
    'snapshot-l1-unaligned',
  ]) {
    it(`${name}: same stdout, stderr and exit code (human and json)`, () => {
      const f = SCENARIOS.find((s) => s.name === name)!.build(tmp.dir);
      const q = qemuCheckHuman(f);
      const o = doctor(f);
      // Our one addition to QEMU's summary: the paragraph after it on lost tables or on leaked clusters
      // that still hold data (README: "Lost tables").
      const lost = o.stdout.indexOf('\n', o.stdout.indexOf('Image end offset:'));
      const tail = lost >= 0 ? o.stdout.slice(lost + 1) : '';
      if (name === 'snapshot-l1-unaligned') expect(tail).toMatch(/lost tables? still map .* data is at risk/);
      else if (ORPHANED_DATA.has(name))
        expect(tail).toMatch(/^\n\d+ leaked clusters? still holds? data no table maps any more: possibly guest data/);
      else expect(tail).toBe('');
      expect(o.stdout.slice(0, o.stdout.length - tail.length)).toBe(q.stdout);
      expect(asQemu(o.stderr)).toBe(q.stderr);
      expect(o.status).toBe(q.status);
      const qj = qemuCheck(f);
      const oj = doctor('--output=json', f);
      expect(oj.status).toBe(qj.status);
      if (qj.stdout === '') {
        expect(oj.stdout).toBe('');
      } else {
        const parsed = JSON.parse(oj.stdout) as Record<string, unknown>;
        expect(Array.isArray(parsed.anomalies)).toBe(true);
        delete parsed.anomalies;
        expect(`${JSON.stringify(parsed, null, 4)}\n`).toBe(qj.stdout);
      }
    });
  }

  it('-q prints nothing on stdout but keeps the per-problem lines', () => {
    const f = SCENARIOS.find((s) => s.name === 'leak')!.build(tmp.dir);
    const o = doctor('-q', f);
    expect(o.stdout).toBe('');
    expect(o.stderr).toBe('Leaked cluster 6 refcount=1 reference=0\n');
    expect(o.status).toBe(3);
  });

  it('refuses non-qcow2 files as qemu-img does (63 when probing, open error with -f qcow2)', () => {
    const raw = join(tmp.dir, 'disk.raw');
    writeFileSync(raw, Buffer.alloc(65536));
    expect(run('qemu-img', ['check', raw]).status).toBe(63);
    const o = doctor(raw);
    expect([o.status, o.stderr]).toEqual([63, 'qcow2-doctor: This image format does not support checks\n']);
    const forced = doctor('-f', 'qcow2', raw);
    expect(forced.status).toBe(1);
    expect(forced.stderr).toBe(
      `qcow2-doctor: Could not open '${raw}': Image is not in qcow2 format (header.magic = 0x0)\n`,
    );
  });

  it('names the field and value when the header is invalid', () => {
    const f = join(tmp.dir, 'bad.qcow2');
    createQcow2(f, '8M');
    patchU32(f, 20, 30);
    const q = qemuCheckHuman(f);
    const o = doctor(f);
    expect(o.status).toBe(q.status);
    expect(o.stderr).toBe(
      `qcow2-doctor: Could not open '${f}': Unsupported cluster size: 2^30 (header.cluster_bits = 30)\n`,
    );
    expect(q.stderr).toContain('Unsupported cluster size: 2^30');
  });

  it("rejects bad arguments with qemu-img's wording", () => {
    const f = SCENARIOS.find((s) => s.name === 'leak')!.build(tmp.dir);
    expect(doctor('--output=xml', f)).toMatchObject({
      status: 1,
      stderr: 'qcow2-doctor: --output must be used with human or json as argument.\n',
    });
    expect(doctor('-r', 'foo', f)).toMatchObject({
      status: 1,
      stderr: "qcow2-doctor: Unknown option value for -r (expecting 'leaks' or 'all'): foo\n",
    });
    const missing = join(tmp.dir, 'missing.qcow2');
    expect(doctor(missing)).toMatchObject({
      status: 1,
      stderr: `qcow2-doctor: Could not open '${missing}': Could not open '${missing}': No such file or directory\n`,
    });
  });

  it("accepts QEMU's --image-opts and --object forms", () => {
    const f = SCENARIOS.find((s) => s.name === 'leak')!.build(tmp.dir);
    const opts = `driver=qcow2,file.filename=${f}`;
    const q = run('qemu-img', ['check', '--object', 'secret,id=s0,data=x', '--image-opts', '--output=json', opts]);
    const o = doctor('--object', 'secret,id=s0,data=x', '--image-opts', '--output=json', opts);
    expect(o.status).toBe(q.status);
    const parsed = JSON.parse(o.stdout) as Record<string, unknown>;
    delete parsed.anomalies;
    expect(`${JSON.stringify(parsed, null, 4)}\n`).toBe(q.stdout);
  });

  it('writes a report file when asked', () => {
    const f = SCENARIOS.find((s) => s.name === 'leak')!.build(tmp.dir);
    const report = join(tmp.dir, 'leak-report.json');
    const o = doctor('--report', report, f);
    expect(o.status).toBe(3);
    expect(readFileSync(report, 'utf8').length).toBeGreaterThan(10);
  });
});
