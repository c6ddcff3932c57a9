// Test-side knowledge of where an image's guest data lives, found independently of the engine:
// `qemu-img map` for plain data clusters, and a minimal L1/L2 walk for compressed clusters (which
// qemu-img map does not locate).
import { readFileSync } from 'node:fs';
import { qemuImg } from '../helpers/qemu.js';

/** Host byte ranges [start, end) holding guest data of the active state, per QEMU. */
export function guestDataRanges(file: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const map = JSON.parse(qemuImg('map', '--output=json', '-f', 'qcow2', file)) as Array<{
    length: number;
    data: boolean;
    offset?: number;
    depth: number;
  }>;
  for (const m of map) if (m.data && m.offset !== undefined && m.depth === 0) out.push([m.offset, m.offset + m.length]);
  return out.concat(compressedRanges(file));
}

/** Byte ranges of compressed clusters reachable from the active L1 (standard L2 entries only). */
export function compressedRanges(file: string): Array<[number, number]> {
  const b = readFileSync(file);
  const bits = b.readUInt32BE(20);
  const cs = 1 << bits;
  const l1Size = b.readUInt32BE(36);
  const l1Off = Number(b.readBigUInt64BE(40));
  const x = BigInt(62 - (bits - 8));
  const out: Array<[number, number]> = [];
  for (let i = 0; i < l1Size; i++) {
    const l2 = Number(b.readBigUInt64BE(l1Off + 8 * i) & 0x00fffffffffffe00n);
    if (l2 === 0 || l2 + cs > b.length) continue;
    for (let j = 0; j < cs / 8; j++) {
      const e = b.readBigUInt64BE(l2 + 8 * j);
      if ((e & (1n << 62n)) === 0n) continue;
      const off = Number(e & ((1n << x) - 1n));
      const sectors = Number((e >> x) & ((1n << BigInt(bits - 8)) - 1n)) + 1;
      out.push([off, off + sectors * 512 - (off % 512)]);
    }
  }
  return out;
}

/** True when `needle` repeated `times` occurs in the file. */
export function containsRun(file: string, byte: number, times = 64): boolean {
  return readFileSync(file).includes(Buffer.alloc(times, byte));
}

/** True when every byte of the ranges reads as zero in `file`. */
export function allZeroIn(file: string, ranges: Array<[number, number]>): boolean {
  const b = readFileSync(file);
  for (const [s, e] of ranges) for (let i = s; i < Math.min(e, b.length); i++) if (b[i] !== 0) return false;
  return true;
}
