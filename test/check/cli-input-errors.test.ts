// Every command says the same thing about an input it cannot use: `qcow2-doctor: Could not open 'X':
// <reason>` in words (a directory, a missing file), never a raw EISDIR/ENOENT; a file whose qcow2
// header is destroyed gets the salvage command that recovers its data.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, run, tempDir, writeBytes } from '../helpers/qemu.js';
import { describeCliError, reasonOf } from '../../engine/cli/input-errors.js';
import { checkFile } from '../../engine/check/index.js';
import { guessContent } from '../../engine/triage/content-kind.js';

const t = tempDir('q2d-cli-input-');
afterAll(t.cleanup);
const dir = join(t.dir, 'a folder');
mkdirSync(dir);
const missing = join(t.dir, 'nope.qcow2');
const fifo = join(t.dir, 'pipe.qcow2');
spawnSync('mkfifo', [fifo]);
const zeroed = join(t.dir, 'zeroed.qcow2');
createQcow2(zeroed, '16M');
qemuIo(zeroed, ['write -P 0x5a 0 1M']);
writeBytes(zeroed, 0, new Uint8Array(512));
const out = join(t.dir, 'out.img');
const doctor = (...args: string[]) => run('node', ['bin/qcow2-doctor.cjs', ...args]);

const COMMANDS: Array<[string, (input: string) => string[]]> = [
  ['check', (i) => ['check', i]],
  ['map', (i) => ['map', i]],
  ['info', (i) => ['info', i]],
  ['strip', (i) => ['strip', i, out]],
  ['salvage', (i) => ['salvage', i, out]],
  ['export', (i) => ['export', i, out]],
];

describe('CLI errors about an input', () => {
  it.each(COMMANDS)('%s DIR: "Could not open \'DIR\': Is a directory"', (_, args) => {
    const r = doctor(...args(dir));
    expect(r.stderr).toBe(`qcow2-doctor: Could not open '${dir}': Is a directory\n`);
    expect(r.status).toBe(1);
  });

  it.each(COMMANDS)(
    '%s FIFO: refused at once as "Not a regular file", never read (a FIFO nobody writes would block)',
    (_, args) => {
      // A hang would be the failure: the child is killed after 30 s instead of waiting on the pipe.
      const r = spawnSync('node', ['bin/qcow2-doctor.cjs', ...args(fifo)], { encoding: 'utf8', timeout: 30_000 });
      expect(r.signal).toBeNull();
      expect(r.stderr).toMatch(
        /^qcow2-doctor: Could not open '.*pipe\.qcow2': (Could not open '.*': )?not a regular file\n$/i,
      );
      expect(r.status).toBe(1);
    },
  );

  it.each(COMMANDS)('%s MISSING: "No such file or directory", in words', (name, args) => {
    const r = doctor(...args(missing));
    expect(r.stderr).toMatch(
      /^qcow2-doctor: Could not open '.*nope\.qcow2': (Could not open '.*': )?No such file or directory\n$/,
    );
    expect(r.stderr).not.toMatch(/ENOENT|EISDIR|EACCES/);
    // check keeps qemu-img check's exact doubled text
    if (name === 'check')
      expect(r.stderr).toBe(
        `qcow2-doctor: Could not open '${missing}': Could not open '${missing}': No such file or directory\n`,
      );
    expect(r.status).toBe(1);
  });

  it('a permission error reads "Permission denied" (as root cannot provoke one, checked on the error itself)', async () => {
    const e = Object.assign(new Error("EACCES: permission denied, open '/x/y.qcow2'"), {
      code: 'EACCES',
      path: '/x/y.qcow2',
    });
    expect(reasonOf(e)).toBe('Permission denied');
    expect(await describeCliError(e, ['node', 'cli', 'salvage', '/x/y.qcow2'])).toEqual([
      "Could not open '/x/y.qcow2': Permission denied",
    ]);
  });

  it('check on a destroyed header says what qemu-img says, then how to salvage', () => {
    expect(run('qemu-img', ['check', zeroed]).status).toBe(63);
    const r = doctor('check', zeroed);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('qcow2-doctor: This image format does not support checks');
    expect(lines[1]).toMatch(
      /^qcow2-doctor: the qcow2 header of this file looks destroyed, but its tables are there \(tables at 0x[0-9a-f]+\): recover its data with: qcow2-doctor salvage \S+zeroed\.qcow2 recovered\.raw$/,
    );
    expect(r.status).toBe(63);
    // strip names the file and gives the same advice
    const s = doctor('strip', zeroed, out);
    expect(s.stderr).toContain(`qcow2-doctor: Could not open '${zeroed}': Image is not in qcow2 format`);
    expect(s.stderr).toContain('qcow2-doctor salvage');
  });

  it("the engine's own entries (checkFile, the triage's content probe) refuse a FIFO and a folder before reading", async () => {
    for (const [path, code] of [
      [fifo, 'EFTYPE'],
      [dir, 'EISDIR'],
    ] as const) {
      await expect(checkFile(path)).rejects.toMatchObject({ code });
      await expect(guessContent(path)).rejects.toMatchObject({ code });
    }
  });
});
