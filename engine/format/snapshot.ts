import * as C from './constants.js';
import { putU16, putU32, putU64, u16, u32, u64, utf8 } from './bytes.js';

export interface SnapshotEntry {
  /** Byte offset of the entry inside the snapshot table. */
  tableOffset: number;
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  /** 32-bit VM state size field. */
  vmStateSize32: number;
  extraDataSize: number;
  /** Extra data as stored (preserved on rewrite). */
  extraData: Uint8Array;
  /** From extra data when present. */
  vmStateSize: number;
  diskSize?: number;
  icount?: number;
  /** Total bytes of the entry including padding. */
  entryLength: number;
}

/** Length of an entry's fixed part + variable part, from its first 40 bytes. */
export function snapshotEntryLength(fixed: Uint8Array, off: number): number {
  const idLen = u16(fixed, off + 12);
  const nameLen = u16(fixed, off + 14);
  const extra = u32(fixed, off + 36);
  return align8(C.SNAPSHOT_ENTRY_FIXED_SIZE + extra + idLen + nameLen);
}

/** Decode one entry; `buf` must hold the whole entry at `off`. `maxExtra` truncates extra data. */
export function decodeSnapshotEntry(buf: Uint8Array, off: number, tableOffset: number): SnapshotEntry {
  const idLen = u16(buf, off + 12);
  const nameLen = u16(buf, off + 14);
  const extraDataSize = u32(buf, off + 36);
  const x = off + C.SNAPSHOT_ENTRY_FIXED_SIZE;
  const extraData = buf.slice(x, x + extraDataSize);
  const vmStateSize32 = u32(buf, off + 32);
  const e: SnapshotEntry = {
    tableOffset,
    l1TableOffset: u64(buf, off),
    l1Size: u32(buf, off + 8),
    dateSec: u32(buf, off + 16),
    dateNsec: u32(buf, off + 20),
    vmClockNsec: u64(buf, off + 24),
    vmStateSize32,
    extraDataSize,
    extraData,
    vmStateSize: extraDataSize >= 8 ? u64(extraData, 0) : vmStateSize32,
    id: utf8(buf, x + extraDataSize, idLen),
    name: utf8(buf, x + extraDataSize + idLen, nameLen),
    entryLength: align8(C.SNAPSHOT_ENTRY_FIXED_SIZE + extraDataSize + idLen + nameLen),
  };
  if (extraDataSize >= 16) e.diskSize = u64(extraData, 8);
  if (extraDataSize >= 24) {
    const hi = u32(extraData, 16);
    const lo = u32(extraData, 20);
    e.icount = hi === 0xffffffff && lo === 0xffffffff ? -1 : hi * 0x1_0000_0000 + lo;
  }
  return e;
}

/** Encode a snapshot entry as QEMU writes it (at least 24 bytes of extra data). */
export function encodeSnapshotEntry(e: SnapshotEntry, virtualSize: number): Uint8Array {
  const extra = new Uint8Array(Math.max(C.SNAPSHOT_EXTRA_QEMU_SIZE, e.extraData.length));
  extra.set(e.extraData);
  putU64(extra, 0, e.vmStateSize);
  putU64(extra, 8, e.diskSize ?? virtualSize);
  if (e.extraData.length < 24)
    putU64(extra, 16, e.icount === undefined || e.icount < 0 ? 0xffffffffffffffffn : e.icount);
  const id = new TextEncoder().encode(e.id);
  const name = new TextEncoder().encode(e.name);
  const len = align8(C.SNAPSHOT_ENTRY_FIXED_SIZE + extra.length + id.length + name.length);
  const out = new Uint8Array(len);
  putU64(out, 0, e.l1TableOffset);
  putU32(out, 8, e.l1Size);
  putU16(out, 12, id.length);
  putU16(out, 14, name.length);
  putU32(out, 16, e.dateSec);
  putU32(out, 20, e.dateNsec);
  putU64(out, 24, e.vmClockNsec);
  putU32(out, 32, e.vmStateSize > 0xffffffff ? 0 : e.vmStateSize);
  putU32(out, 36, extra.length);
  out.set(extra, 40);
  out.set(id, 40 + extra.length);
  out.set(name, 40 + extra.length + id.length);
  return out;
}

export function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
