// Helpers shared by the repair tests that damage a real image and judge the result with QEMU's reader.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './qemu.js';

/** Whether QEMU's reader finds `length` bytes of `byte` at guest `offset` of `file`. */
export function readsBack(file: string, byte: number, offset: number, length: number, format = 'qcow2'): boolean {
  const r = run('qemu-io', ['-f', format, '-r', '-c', `read -P 0x${byte.toString(16)} ${offset} ${length}`, file]);
  return r.status === 0 && !/fail|error/i.test(r.stdout + r.stderr) && r.stdout.includes(`read ${length}/${length}`);
}

/** A fresh folder per case under `root` (so outputs and journals beside the image never meet), and its image path. */
export function caseFiles(root: string): (name: string) => string {
  let n = 0;
  return (name) => {
    const d = join(root, `${name}-${n++}`);
    mkdirSync(d);
    return join(d, 'disk.qcow2');
  };
}

const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');

/** `qcow2-doctor check -r all --no-journal --output=json FILE`: its exit status, stderr and JSON. */
export function repairAll(file: string): { status: number; stderr: string; out: Record<string, unknown> } {
  const r = run('node', [CLI, 'check', '-r', 'all', '--no-journal', '--output=json', file]);
  return { status: r.status, stderr: r.stderr, out: JSON.parse(r.stdout) as Record<string, unknown> };
}
