// Guest-visible data of an image, compared chunk by chunk through QEMU's own reader
// (qemu-img map + qemu-img convert), so "data intact" is judged by QEMU, not by us.
import { closeSync, openSync, readSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { run } from '../helpers/qemu.js';

export const CHUNK = 64 * 1024;

/** 64 KiB guest chunks that hold written data in `file` (QEMU's map: data=true), at most `max`. */
export function dataChunks(file: string, max = 2048): number[] {
  const r = run('qemu-img', ['map', '-f', 'qcow2', '--output=json', file]);
  if (r.status !== 0) return [];
  const out = new Set<number>();
  for (const e of JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean }>) {
    if (!e.data) continue;
    for (let c = Math.floor(e.start / CHUNK); c * CHUNK < e.start + e.length && out.size < max; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * SHA-256 of each chunk as QEMU reads the guest disk, or undefined when QEMU cannot read the image
 * at all (convert fails). Uses a sparse raw file, read only at the chunks asked for.
 */
export function chunkHashes(file: string, chunks: number[], scratch: string): Map<number, string> | undefined {
  const r = run('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', file, scratch]);
  if (r.status !== 0) return undefined;
  const fd = openSync(scratch, 'r');
  const out = new Map<number, string>();
  try {
    const b = Buffer.alloc(CHUNK);
    for (const c of chunks) {
      const n = readSync(fd, b, 0, CHUNK, c * CHUNK);
      out.set(c, createHash('sha256').update(b.subarray(0, n)).digest('hex'));
    }
  } finally {
    closeSync(fd);
    rmSync(scratch, { force: true });
  }
  return out;
}
