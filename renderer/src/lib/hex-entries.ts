/**
 * What the bytes under the cursor are, inside a cluster whose role is known: "L2[17] → guest
 * 0x110000 · host 0x50000", "L1[0] → L2 table 0x40000", "refcount[5] = 1 (cluster 5)". Pure.
 */
import { HostRole } from '../../../engine/contract/roles.js';

export interface EntryContext {
  role: number;
  /** Host offset of the cluster, and its size. */
  clusterOffset: number;
  clusterSize: number;
  extendedL2: boolean;
  refcountBits: number;
  /** For an L2 table: the L1 index that points at it. For a refcount block: its refcount-table index. */
  parentIndex?: number;
  /** For a data cluster: the guest offset it holds. */
  guestOffset?: number;
}

export interface Entry {
  /** File offset and length of the entry's bytes. */
  start: number;
  length: number;
  label: string;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

function u64(page: Uint8Array, i: number): bigint | null {
  if (i < 0 || i + 8 > page.length) return null;
  let v = 0n;
  for (let k = 0; k < 8; k++) v = (v << 8n) | BigInt(page[i + k]!);
  return v;
}

/** The entry at file offset `at`, reading its value from `page` (the bytes shown, starting at `pageOffset`). */
export function entryAt(ctx: EntryContext, at: number, page: Uint8Array, pageOffset: number): Entry | null {
  const within = at - ctx.clusterOffset;
  if (within < 0 || within >= ctx.clusterSize) return null;
  const cs = ctx.clusterSize;
  const l2Size = ctx.extendedL2 ? 16 : 8;
  const l2Entries = cs / l2Size;
  switch (ctx.role) {
    case HostRole.L1:
    case HostRole.SnapshotL1: {
      const i = Math.floor(within / 8);
      const start = ctx.clusterOffset + i * 8;
      const v = u64(page, start - pageOffset);
      const l2 = v === null ? 0 : Number(v & OFFSET_MASK);
      const guest = i * l2Entries * cs;
      return {
        start,
        length: 8,
        label: `L1[${i}] → ${l2 ? `L2 table ${hex(l2)}` : 'no L2 table'} · guest ${hex(guest)}…`,
      };
    }
    case HostRole.L2:
    case HostRole.SnapshotL2: {
      const i = Math.floor(within / l2Size);
      const start = ctx.clusterOffset + i * l2Size;
      const v = u64(page, start - pageOffset);
      const guest = ctx.parentIndex !== undefined ? ` → guest ${hex((ctx.parentIndex * l2Entries + i) * cs)}` : '';
      let target = '';
      if (v !== null) {
        if ((v >> 62n) & 1n) target = ' · compressed';
        else if (v & OFFSET_MASK) target = ` · host ${hex(Number(v & OFFSET_MASK))}`;
        else target = v & 1n ? ' · reads as zeros' : ' · unallocated';
      }
      return { start, length: l2Size, label: `L2[${i}]${guest}${target}` };
    }
    case HostRole.RefcountTable: {
      const i = Math.floor(within / 8);
      const start = ctx.clusterOffset + i * 8;
      const v = u64(page, start - pageOffset);
      const blk = v === null ? 0 : Number(v & OFFSET_MASK);
      return { start, length: 8, label: `refcount table[${i}] → ${blk ? `refcount block ${hex(blk)}` : 'no block'}` };
    }
    case HostRole.RefcountBlock: {
      const bits = ctx.refcountBits;
      if (bits < 8) return null;
      const bytes = bits / 8;
      const j = Math.floor(within / bytes);
      const start = ctx.clusterOffset + j * bytes;
      let v = 0;
      for (let k = 0; k < bytes; k++) v = v * 256 + (page[start - pageOffset + k] ?? 0);
      const perBlock = (cs * 8) / bits;
      const cluster = ctx.parentIndex !== undefined ? ` (cluster ${ctx.parentIndex * perBlock + j})` : '';
      return { start, length: bytes, label: `refcount[${j}] = ${v}${cluster}` };
    }
    case HostRole.Data:
    case HostRole.SnapshotData:
      if (ctx.guestOffset === undefined) return null;
      return { start: at, length: 1, label: `data · guest ${hex(ctx.guestOffset + within)}` };
    default:
      return null;
  }
}
