// The in-memory refcount table (QEMU's IMRT): one counter per host cluster at the image's refcount
// width (1..8-bit widths in bytes, 16-bit in Uint16, 32/64-bit in Uint32), sized from the file
// length — QEMU's end-of-file guard means no reference can land more than a cluster past EOF.
import { maxRefcount } from '../format/refcount.js';

export type RefArray = Uint8Array | Uint16Array | Uint32Array;

/** In the one-byte IMRT of wide refcount widths: "255 or more; the exact count is kept aside". */
export const WIDE_SENTINEL = 255;

/** Largest in-memory refcount table we agree to allocate (QEMU would fail with ENOMEM). */
export const MAX_IMRT_BYTES = 4 * 1024 * 1024 * 1024;

export function refArrayBytesPerEntry(order: number): number {
  return order <= 3 ? 1 : order === 4 ? 2 : 4;
}

export function createRefArray(order: number, entries: number): RefArray {
  return order <= 3 ? new Uint8Array(entries) : order === 4 ? new Uint16Array(entries) : new Uint32Array(entries);
}

/** The largest value a counter may reach: the width's maximum (capped by the array's). */
export function refArrayMax(order: number): number {
  return Math.min(maxRefcount(order), 0xffffffff);
}
