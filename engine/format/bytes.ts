/** Big-endian helpers. 64-bit values come back as numbers when safe, else as bigints via u64n. */

export function dv(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function u16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

export function u32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) >>> 0) + ((buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!);
}

export function u64n(buf: Uint8Array, off: number): bigint {
  return (BigInt(u32(buf, off)) << 32n) | BigInt(u32(buf, off + 4));
}

/** A 64-bit value as a number; exact below 2^53, approximate above (callers bound-check first). */
export function u64(buf: Uint8Array, off: number): number {
  return u32(buf, off) * 0x1_0000_0000 + u32(buf, off + 4);
}

export function putU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

export function putU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/** Write a 64-bit value given as a number (< 2^64, exact below 2^53) or a bigint. */
export function putU64(buf: Uint8Array, off: number, v: number | bigint): void {
  const b = typeof v === 'bigint' ? v : BigInt(v);
  putU32(buf, off, Number((b >> 32n) & 0xffffffffn));
  putU32(buf, off + 4, Number(b & 0xffffffffn));
}

/** Hex without 0x and without padding, like C's %lx, from two 32-bit halves. */
export function hex64(hi: number, lo: number): string {
  if (hi === 0) return (lo >>> 0).toString(16);
  return (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}

/** Hex of a number or bigint without 0x (C %lx). */
export function hex(v: number | bigint): string {
  return v.toString(16);
}

export function latin1(buf: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(buf[off + i]!);
  return s;
}

export function utf8(buf: Uint8Array, off: number, len: number): string {
  return new TextDecoder().decode(buf.subarray(off, off + len));
}
