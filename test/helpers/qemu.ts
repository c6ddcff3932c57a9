// Helpers for tests that use real QEMU as the oracle: make images with qemu-img/qemu-io, damage
// them at precise bytes, and ask qemu-img for its verdict.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readSync, writeSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'q2d-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', maxBuffer: 1 << 30 });
}

/** Run qemu-io commands on an image (each -c is one command). Throws on a failed command. */
export function qemuIo(file: string, cmds: string[], opts: { format?: string; extra?: string[] } = {}): string {
  const args = ['-f', opts.format ?? 'qcow2', ...(opts.extra ?? [])];
  for (const c of cmds) args.push('-c', c);
  args.push(file);
  const r = run('qemu-io', args);
  if (r.status !== 0 || /failed|error/i.test(r.stderr + r.stdout))
    throw new Error(`qemu-io ${cmds.join(' ; ')} on ${file}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** qemu-img create -f qcow2 with -o options. */
export function createQcow2(
  file: string,
  size: string | number,
  options: Record<string, string | number | boolean> = {},
  backing?: { file: string; format: string },
): void {
  const o = Object.entries(options).map(([k, v]) => `${k}=${v === true ? 'on' : v === false ? 'off' : v}`);
  const args = ['create', '-q', '-f', 'qcow2'];
  if (o.length) args.push('-o', o.join(','));
  if (backing) args.push('-b', backing.file, '-F', backing.format);
  args.push(file, String(size));
  qemuImg(...args);
}

export interface QemuCheck {
  status: number;
  json?: Record<string, unknown>;
  stdout: string;
  stderr: string;
}

/** `qemu-img check --output=json` (plus any -r mode) and its exit code. */
export function qemuCheck(file: string, repair?: 'leaks' | 'all'): QemuCheck {
  const args = ['check', '-f', 'qcow2', '--output=json'];
  if (repair) args.push('-r', repair);
  args.push(file);
  const r = run('qemu-img', args);
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, stdout: r.stdout, stderr: r.stderr };
}

/** `qemu-img check` in human form (stdout summary, stderr per-problem lines). */
export function qemuCheckHuman(file: string, repair?: 'leaks' | 'all'): RunResult {
  const args = ['check', '-f', 'qcow2'];
  if (repair) args.push('-r', repair);
  args.push(file);
  return run('qemu-img', args);
}

export function readBytes(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

export function writeBytes(file: string, offset: number, data: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

export function patchU64(file: string, offset: number, value: bigint | number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  writeBytes(file, offset, b);
}

export function patchU32(file: string, offset: number, value: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  writeBytes(file, offset, b);
}

export function patchU16(file: string, offset: number, value: number): void {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  writeBytes(file, offset, b);
}

export function readU64(file: string, offset: number): bigint {
  return readBytes(file, offset, 8).readBigUInt64BE();
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * `qemu-img create` for an encrypted (LUKS) image. QEMU calibrates PBKDF2 by timing a first short
 * round with getrusage, which on a fast, quiet machine often reads 0 ms and fails with "Unable to get
 * accurate CPU usage" (a known QEMU bug, fixed upstream after 7.2; here it fails about half the
 * time). That is about the timing, not the image: try again, many times if need be.
 */
export function qemuImgCreateLuks(args: string[]): RunResult {
  let r = run('qemu-img', args);
  for (let i = 0; i < 40 && r.status !== 0 && r.stderr.includes('Unable to get accurate CPU usage'); i++)
    r = run('qemu-img', args);
  return r;
}
