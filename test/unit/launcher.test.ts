// The CLI's launcher (bin/qcow2-doctor.cjs) on a stand-in tree: it runs the bundle when it is at
// least as new as the compiled modules and the modules otherwise, works with a missing or foreign
// code cache, keeps the command's exit code, and waits for a command that is not finished. The real
// bundle is exercised by every CLI test.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-launcher-');
afterAll(t.cleanup);

const root = t.dir;
const launcher = join(root, 'bin', 'qcow2-doctor.cjs');
const bundle = join(root, 'dist', 'cli', 'qcow2-doctor.cjs');
const modules = join(root, 'dist', 'engine', 'cli', 'main.js');

function setUp(): void {
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'dist', 'cli'), { recursive: true });
  mkdirSync(join(root, 'dist', 'engine', 'cli'), { recursive: true });
  copyFileSync(join(process.cwd(), 'bin', 'qcow2-doctor.cjs'), launcher);
  writeFileSync(join(root, 'package.json'), '{ "type": "module" }\n');
  // Stand-ins: each prints which one ran, sets the exit code from its argument, and may leave a
  // timer running (a command not finished when main returns, as `serve` is).
  const body = (who: string): string => `
    process.stdout.write('${who} ' + argv.slice(2).join(' ') + '\\n');
    process.exitCode = Number(argv[2] ?? 0);
    if (argv[3] === 'linger') setTimeout(() => process.stdout.write('${who} lingered\\n'), 50);`;
  writeFileSync(bundle, `exports.main = async (argv) => {${body('bundle')}};\n`);
  writeFileSync(modules, `export async function main(argv) {${body('modules')}}\n`);
}

function at(file: string, seconds: number): void {
  utimesSync(file, seconds, seconds);
}

describe('the CLI launcher', () => {
  setUp();

  it('runs the bundle when it is as new as the compiled modules, the modules when it is older', () => {
    at(modules, 1_000_000);
    at(bundle, 1_000_000);
    let r = run('node', [launcher, '0']);
    expect(r.stdout).toBe('bundle 0\n');
    expect(r.status).toBe(0);
    at(bundle, 999_000); // a tsc run after the last bundle: the bundle is stale
    r = run('node', [launcher, '0']);
    expect(r.stdout).toBe('modules 0\n');
  });

  it('keeps the exit code and waits for a command that still has work pending', () => {
    at(bundle, 1_000_000);
    expect(run('node', [launcher, '3']).status).toBe(3);
    const r = run('node', [launcher, '2', 'linger']);
    expect(r.stdout).toBe('bundle 2 linger\nbundle lingered\n');
    expect(r.status).toBe(2);
    at(bundle, 999_000);
    const m = run('node', [launcher, '3', 'linger']);
    expect(m.stdout).toBe('modules 3 linger\nmodules lingered\n');
    expect(m.status).toBe(3);
  });

  it('starts without a code cache and with one V8 rejects', () => {
    at(bundle, 1_000_000);
    writeFileSync(`${bundle}.cache`, 'not a V8 code cache');
    const r = run('node', [launcher, '0']);
    expect(r.stdout).toBe('bundle 0\n');
    expect(r.stderr).toBe('');
  });
});
