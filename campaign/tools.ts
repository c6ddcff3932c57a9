// The programs the campaign runs: QEMU's (the judge) and ours (through the launcher, as users run it;
// in-process.ts runs the launcher's entry point inside the worker instead).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** The repository's root: the first folder up from here that holds package.json (from source or dist/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('campaign: no package.json above this module');
    dir = up;
  }
  return dir;
}

export const LAUNCHER = join(repoRoot(), 'bin', 'qcow2-doctor.cjs');

function run(cmd: string, args: string[], timeoutMs = 60_000): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28, timeout: timeoutMs });
  if (r.error) return { status: -1, stdout: '', stderr: String(r.error) };
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function qemuImg(args: string[]): string {
  const r = run('qemu-img', args);
  if (r.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** qemu-img without throwing: the judge wants its exit code too. */
export function qemuImgRan(args: string[]): Ran {
  return run('qemu-img', args);
}

export function qemuIo(file: string, cmds: string[]): void {
  const args = ['-f', 'qcow2'];
  for (const c of cmds) args.push('-c', c);
  args.push(file);
  const r = run('qemu-io', args);
  if (r.status !== 0 || /failed|error/i.test(r.stderr + r.stdout))
    throw new Error(`qemu-io on ${file}: ${r.stderr}${r.stdout}`);
}

/** A program run without blocking, from this process. */
export function startHere(cmd: string, args: string[], timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 1 << 24) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 1 << 20) stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: -1, stdout, stderr: String(e) });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal === 'SIGKILL' ? -2 : -1), stdout, stderr });
    });
  });
}

export type Starter = (cmd: string, args: string[], timeoutMs: number) => Promise<Ran>;
let starter: Starter = startHere;

/** Start programs through `s` from now on (a worker hands them to its small spawner: spawner.ts). */
export function startProgramsWith(s: Starter): void {
  starter = s;
}

/** A program run without blocking, so that cases can run side by side. */
export function runAsync(cmd: string, args: string[], timeoutMs = 120_000): Promise<Ran> {
  return starter(cmd, args, timeoutMs);
}

/** Runs our CLI with these arguments: a process per command (`ours`) or in-process (in-process.ts). */
export type OurCli = (args: string[]) => Promise<Ran>;

/** Our CLI, through the launcher, as users run it. */
export function ours(args: string[]): Promise<Ran> {
  return runAsync(process.execPath, [LAUNCHER, ...args]);
}

export function qemuImgAsync(args: string[]): Promise<Ran> {
  return runAsync('qemu-img', args);
}
