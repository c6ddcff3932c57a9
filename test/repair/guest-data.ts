// Guest-visible data of an image, compared chunk by chunk through QEMU's own reader
// (qemu-img map + qemu-img convert), so "data intact" is judged by QEMU, not by us.
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
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

/**
 * Zero the clusters `qemu-img check` names as leaked (refcount 1, no reference): a leak that holds
 * no data, as an allocation interrupted before its write leaves. Leaked clusters that still hold
 * data are kept by our -r leaks (QEMU frees them), so QEMU-parity tests of leak repair use this.
 */
export function emptyLeakedClusters(file: string): string {
  const header = Buffer.alloc(24);
  const hfd = openSync(file, 'r');
  readSync(hfd, header, 0, 24, 0);
  closeSync(hfd);
  const clusterSize = 2 ** header.readUInt32BE(20);
  const r = run('qemu-img', ['check', '-U', file]);
  const zeros = Buffer.alloc(clusterSize);
  const fd = openSync(file, 'r+');
  try {
    for (const m of (r.stdout + r.stderr).matchAll(/Leaked cluster (\d+) refcount=\d+ reference=0/g))
      writeSync(fd, zeros, 0, clusterSize, Number(m[1]) * clusterSize);
  } finally {
    closeSync(fd);
  }
  return file;
}
