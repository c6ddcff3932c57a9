import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createQcow2, patchU64, qemuIo, readU64, run, sha256, tempDir } from '../helpers/qemu.js';
import { buildMixedFolder } from './mixed-folder.js';
import { findImages } from '../../engine/triage/find-images.js';
import { triageFiles } from '../../engine/triage/run-triage.js';
import { CancelToken } from '../../engine/base/task-control.js';
import { CancelledError } from '../../engine/base/errors.js';

const t = tempDir('q2d-triage-');
let images: string[] = [];
const hashes = new Map<string, string>();
/** What `qemu-img check` (format probed, as a user runs it) exits with, per image. */
const qemuExit = new Map<string, number>();

beforeAll(() => {
  images = buildMixedFolder(t.dir);
  for (const name of images) {
    const file = join(t.dir, name);
    hashes.set(name, sha256(file));
    qemuExit.set(name, run('qemu-img', ['check', file]).status);
  }
});
afterAll(t.cleanup);

const VERDICT_OF_EXIT: Record<number, string> = {
  0: 'clean',
  1: 'unreadable',
  2: 'corrupt',
  3: 'leaks',
  63: 'not-qcow2',
};

describe('triage of a folder of mixed images', () => {
  it('gives the verdict qemu-img check gives, for every image, and changes nothing', () => {
    expect(images.length).toBeGreaterThanOrEqual(20);
    // The folder really is mixed: every verdict occurs.
    expect(new Set(qemuExit.values())).toEqual(new Set([0, 1, 2, 3, 63]));
    const r = run('node', ['bin/qcow2-doctor.cjs', 'triage', '--output=json', t.dir]);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((x) => x.path)).toEqual(images.map((n) => join(t.dir, n)).sort());
    for (const row of rows) {
      const name = String(row.path).slice(t.dir.length + 1);
      const want = qemuExit.get(name)!;
      expect({ name, verdict: row.verdict, exit: row['exit-code'] }).toEqual({
        name,
        verdict: VERDICT_OF_EXIT[want],
        exit: want,
      });
      expect(sha256(String(row.path))).toBe(hashes.get(name));
    }
    expect(r.status).toBe(1);
  });

  it("carries qemu-img check's own JSON fields for each image that was checked", () => {
    const names = ['leak.qcow2', 'cross-link.qcow2', 'compressed.qcow2', 'snapshots.qcow2', 'v2/leak-v2.qcow2'];
    const files = names.map((n) => join(t.dir, n));
    const r = run('node', ['bin/qcow2-doctor.cjs', 'triage', '--output=json', ...files]);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(names.length);
    for (const [i, file] of files.entries()) {
      const q = JSON.parse(run('qemu-img', ['check', '--output=json', file]).stdout) as Record<string, unknown>;
      const row = rows[i]!;
      for (const [k, v] of Object.entries(q)) expect({ file, k, v: row[k] }).toEqual({ file, k, v });
      expect(row.path).toBe(file);
    }
    expect(r.status).toBe(2);
  });

  it('prints a table with flags, sizes and the backing chain, and explains unreadable images', () => {
    const r = run('node', ['bin/qcow2-doctor.cjs', 'triage', t.dir]);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^PATH +VERDICT +LEAKS +LOST +ERRORS +FLAGS +VIRTUAL +FILE +BACKING +TIME$/);
    const line = (name: string): string => lines.find((l) => l.startsWith(`${join(t.dir, name)} `))!;
    expect(line('leak.qcow2')).toMatch(/ leaks +1 +0 +0 +- +64 MiB /);
    expect(line('dirty.qcow2')).toMatch(/ dirty /);
    expect(line('corrupt-bit.qcow2')).toMatch(/ clean +0 +0 +0 +corrupt /);
    expect(line('chain/overlay.qcow2')).toMatch(/ base\.qcow2 /);
    expect(line('chain/orphan.qcow2')).toMatch(/ unreadable .* gone\.qcow2 /);
    expect(r.stdout).toContain(
      `${join(t.dir, 'chain/orphan.qcow2')}: Could not open '${join(t.dir, 'chain/orphan.qcow2')}': Could not open backing file: Could not open '${join(t.dir, 'chain/gone.qcow2')}': No such file or directory`,
    );
    const count = (code: number): number => [...qemuExit.values()].filter((c) => c === code).length;
    expect(
      r.stdout.endsWith(
        `\n${images.length} images: ${count(0)} clean, ${count(3)} with leaks, ${count(2)} corrupt, ` +
          `${count(1)} unreadable, ${count(63)} not qcow2 (2 other files in the folders were not qcow2 and were skipped)\n`,
      ),
    ).toBe(true);
    expect(r.status).toBe(1);
  });

  it('counts lost tables: a LOST column and "lost-tables" in each JSON line', () => {
    const own = tempDir('q2d-triage-lost-');
    const f = join(own.dir, 'zeroed-l1.qcow2');
    createQcow2(f, '64M');
    qemuIo(f, ['write -P 0x11 0 128k']);
    patchU64(f, Number(readU64(f, 40)), 0); // the only L1 entry: its L2 table is lost
    const json = JSON.parse(run('node', ['bin/qcow2-doctor.cjs', 'triage', '--output=json', f]).stdout);
    expect(json['lost-tables']).toBe(1);
    expect(json.leaks).toBe(3); // QEMU's count: the table and its two data clusters
    const table = run('node', ['bin/qcow2-doctor.cjs', 'triage', f]).stdout.split('\n');
    expect(table.find((l) => l.startsWith(`${f} `))).toMatch(/ leaks +3 +1 +0 /);
    own.cleanup();
  });

  it('exits 0 when every image is clean and 3 when the worst is a leak', () => {
    expect(
      run('node', ['bin/qcow2-doctor.cjs', 'triage', join(t.dir, 'clean.qcow2'), join(t.dir, 'v2/clean-v2.qcow2')])
        .status,
    ).toBe(0);
    expect(
      run('node', ['bin/qcow2-doctor.cjs', 'triage', join(t.dir, 'clean.qcow2'), join(t.dir, 'leak.qcow2')]).status,
    ).toBe(3);
  });

  it('never waits on a file that is not a regular file (a FIFO nobody writes to)', () => {
    const fifo = join(t.dir, 'stuck.qcow2');
    run('mkfifo', [fifo]);
    const r = run('node', ['bin/qcow2-doctor.cjs', 'triage', '--output=json', fifo, t.dir]);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({
      path: fifo,
      verdict: 'unreadable',
      error: `Could not open '${fifo}': not a regular file`,
    });
    expect(rows.filter((x) => x.path === fifo)).toHaveLength(1); // the folder walk skips it
    run('rm', ['-f', fifo]);
  });

  it('gives up on an image that takes longer than --timeout, and goes on with the next', () => {
    // A millisecond is far less than a worker thread needs to start: the first check cannot finish.
    const r = run('node', [
      'bin/qcow2-doctor.cjs',
      'triage',
      '--output=json',
      '--jobs',
      '1',
      '--timeout',
      '0.001',
      join(t.dir, 'clean.qcow2'),
      join(t.dir, 'nope.qcow2'),
    ]);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ verdict: 'unreadable', error: 'the check did not finish within 0.001 s' });
    expect(rows).toHaveLength(2);
    expect(r.status).toBe(1);
  });

  it('reports an explicitly named missing file instead of stopping', () => {
    const r = run('node', [
      'bin/qcow2-doctor.cjs',
      'triage',
      '--output=json',
      join(t.dir, 'nope.qcow2'),
      join(t.dir, 'clean.qcow2'),
    ]);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((x) => x.verdict)).toEqual(['unreadable', 'clean']);
    expect(rows[0]!.error).toBe(`Could not open '${join(t.dir, 'nope.qcow2')}': No such file or directory`);
  });
});

describe('triage engine', () => {
  it('finds images in folders by magic or name, and keeps explicitly named files', async () => {
    const found = await findImages([t.dir, join(t.dir, 'README.txt')]);
    expect(found.files).toContain(join(t.dir, 'README.txt'));
    expect(found.files.filter((x) => x.endsWith('.qcow2'))).toHaveLength(images.length);
    expect(found.skipped).toBe(2); // README.txt (seen in the folder) and disk.raw
  });

  it('stops when cancelled', async () => {
    const cancel = new CancelToken();
    const files = images.map((n) => join(t.dir, n));
    let seen = 0;
    const p = triageFiles(files, {
      concurrency: 1,
      cancel,
      onRow: () => {
        if (++seen === 2) cancel.cancel();
      },
    });
    await expect(p).rejects.toThrow(CancelledError);
    expect(seen).toBe(2);
  });
});
