// Seeded damage to metadata only: bit flips and zeroed ranges in every structure, one table
// overwritten with another table's content (an L2 table overwritten by a refcount block is a
// real-world pattern), pointers redirected into other metadata or made unaligned / past the end,
// the active L1 zeroed, truncation. Guest data clusters are never touched: damage to guest bytes
// themselves is invisible to any checker, so no claim could be judged on it.
import { HostRole } from '../engine/contract/roles.js';
import type { Base } from './bases.js';
import { type Prng, int, pick } from './prng.js';

export type DamageKind =
  | 'bitflip'
  | 'zero-cluster'
  | 'zero-range'
  | 'zero-l1'
  | 'overwrite-table'
  | 'redirect-pointer'
  | 'bad-data-pointer'
  | 'truncate';

export const DAMAGE_KINDS: readonly DamageKind[] = [
  'bitflip',
  'zero-cluster',
  'zero-range',
  'zero-l1',
  'overwrite-table',
  'redirect-pointer',
  'bad-data-pointer',
  'truncate',
];

export interface Damage {
  kind: DamageKind;
  /** What was damaged, in words (structure, offset, detail). */
  what: string;
  /** The damaged file. */
  bytes: Uint8Array;
}

const METADATA = new Set<number>([
  HostRole.Header,
  HostRole.L1,
  HostRole.L2,
  HostRole.RefcountTable,
  HostRole.RefcountBlock,
  HostRole.SnapshotTable,
  HostRole.SnapshotL1,
  HostRole.SnapshotL2,
  HostRole.BitmapDirectory,
  HostRole.BitmapTable,
]);
const POINTER_TABLES = new Set<number>([
  HostRole.L1,
  HostRole.L2,
  HostRole.RefcountTable,
  HostRole.SnapshotL1,
  HostRole.SnapshotL2,
]);
const ROLE_WORDS: Record<number, string> = {
  [HostRole.Header]: 'header',
  [HostRole.L1]: 'L1',
  [HostRole.L2]: 'L2',
  [HostRole.RefcountTable]: 'refcount table',
  [HostRole.RefcountBlock]: 'refcount block',
  [HostRole.SnapshotTable]: 'snapshot table',
  [HostRole.SnapshotL1]: 'snapshot L1',
  [HostRole.SnapshotL2]: 'snapshot L2',
  [HostRole.BitmapDirectory]: 'bitmap directory',
  [HostRole.BitmapTable]: 'bitmap table',
};

function clustersWith(base: Base, roles: Set<number>): number[] {
  const out: number[] = [];
  const n = Math.ceil(base.fileSize / base.config.clusterSize);
  for (let i = 0; i < Math.min(n, base.roles.length); i++) if (roles.has(base.roles[i]!)) out.push(i);
  return out;
}

function u64(b: Uint8Array, o: number): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(o);
}
function setU64(b: Uint8Array, o: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset).setBigUint64(o, v);
}
function u32(b: Uint8Array, o: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(o);
}

function where(base: Base, cluster: number): string {
  return `${ROLE_WORDS[base.roles[cluster]!] ?? 'cluster'} at 0x${(cluster * base.config.clusterSize).toString(16)}`;
}

const OFFSET_MASK = 0x00fffffffffffe00n;

/** Entry positions (byte offsets in the file) of non-zero pointer entries in a table cluster. */
function liveEntries(base: Base, bytes: Uint8Array, cluster: number): number[] {
  const cs = base.config.clusterSize;
  const role = base.roles[cluster]!;
  const step = base.config.extendedL2 && (role === HostRole.L2 || role === HostRole.SnapshotL2) ? 16 : 8;
  const out: number[] = [];
  for (let o = cluster * cs; o + 8 <= (cluster + 1) * cs; o += step) {
    const e = u64(bytes, o);
    const compressed = (role === HostRole.L2 || role === HostRole.SnapshotL2) && (e >> 62n) & 1n;
    if ((e & OFFSET_MASK) !== 0n && !compressed) out.push(o);
  }
  return out;
}

type Damager = (rng: Prng, base: Base, b: Uint8Array) => string | undefined;

const bitflip: Damager = (rng, base, b) => {
  const c = pick(rng, clustersWith(base, METADATA));
  const cs = base.config.clusterSize;
  // Most tables are mostly zeros past their live part: aim at the first 4 KiB half the time.
  const span = rng() < 0.5 ? Math.min(cs, 4096) : cs;
  const flips = 1 + int(rng, 4);
  const at: string[] = [];
  for (let i = 0; i < flips; i++) {
    const bit = int(rng, span * 8);
    b[c * cs + (bit >> 3)]! ^= 1 << (bit & 7);
    at.push(`+${bit >> 3}.${bit & 7}`);
  }
  return `${where(base, c)}: bits ${at.join(' ')}`;
};

const zeroCluster: Damager = (rng, base, b) => {
  const c = pick(rng, clustersWith(base, METADATA));
  const cs = base.config.clusterSize;
  b.fill(0, c * cs, (c + 1) * cs);
  return `${where(base, c)}: zeroed`;
};

const zeroRange: Damager = (rng, base, b) => {
  const c = pick(rng, clustersWith(base, METADATA));
  const cs = base.config.clusterSize;
  const start = int(rng, cs / 8) * 8;
  const len = Math.min(cs - start, 8 * (1 + int(rng, 64)));
  b.fill(0, c * cs + start, c * cs + start + len);
  return `${where(base, c)}: ${len} bytes zeroed at +${start}`;
};

const zeroL1: Damager = (_rng, _base, b) => {
  const l1 = Number(u64(b, 40));
  const size = u32(b, 36);
  if (size === 0) return undefined;
  b.fill(0, l1, l1 + size * 8);
  return `active L1 at 0x${l1.toString(16)}: ${size} entries zeroed`;
};

const overwriteTable: Damager = (rng, base, b) => {
  const tables = clustersWith(base, METADATA).filter((c) => base.roles[c] !== HostRole.Header);
  if (tables.length < 2) return undefined;
  const dst = pick(rng, tables);
  const src = pick(
    rng,
    tables.filter((c) => c !== dst),
  );
  const cs = base.config.clusterSize;
  b.copyWithin(dst * cs, src * cs, (src + 1) * cs);
  return `${where(base, dst)}: overwritten by the ${where(base, src)}`;
};

const redirectPointer: Damager = (rng, base, b) => {
  const tables = clustersWith(base, POINTER_TABLES).filter((c) => liveEntries(base, b, c).length > 0);
  const targets = clustersWith(base, METADATA);
  if (tables.length === 0 || targets.length === 0) return undefined;
  const t = pick(rng, tables);
  const entry = pick(rng, liveEntries(base, b, t));
  const to = pick(rng, targets);
  const old = u64(b, entry);
  setU64(b, entry, (old & ~OFFSET_MASK) | BigInt(to * base.config.clusterSize));
  return `${where(base, t)}: entry at 0x${entry.toString(16)} redirected onto the ${where(base, to)}`;
};

const badDataPointer: Damager = (rng, base, b) => {
  const l2s = clustersWith(base, new Set([HostRole.L2, HostRole.SnapshotL2])).filter(
    (c) => liveEntries(base, b, c).length > 0,
  );
  if (l2s.length === 0) return undefined;
  const t = pick(rng, l2s);
  const entry = pick(rng, liveEntries(base, b, t));
  const old = u64(b, entry);
  const unaligned = rng() < 0.5;
  const off = unaligned
    ? (old & OFFSET_MASK) + 512n * BigInt(1 + int(rng, 3))
    : BigInt(base.fileSize + base.config.clusterSize * (1 + int(rng, 64)));
  if (unaligned && base.config.clusterSize === 512) return undefined;
  setU64(b, entry, (old & ~OFFSET_MASK) | (off & OFFSET_MASK));
  return `${where(base, t)}: entry at 0x${entry.toString(16)} made ${unaligned ? 'unaligned' : 'past the end of the file'}`;
};

const DAMAGERS: Record<Exclude<DamageKind, 'truncate'>, Damager> = {
  bitflip,
  'zero-cluster': zeroCluster,
  'zero-range': zeroRange,
  'zero-l1': zeroL1,
  'overwrite-table': overwriteTable,
  'redirect-pointer': redirectPointer,
  'bad-data-pointer': badDataPointer,
};

/** One seeded damage of `base`'s file; undefined when this kind has nothing to aim at here. */
export function damage(rng: Prng, base: Base, file: Uint8Array, kind: DamageKind): Damage | undefined {
  const cs = base.config.clusterSize;
  if (kind === 'truncate') {
    const clusters = Math.ceil(file.length / cs);
    if (clusters < 4) return undefined;
    const keep = 2 + int(rng, clusters - 3);
    return {
      kind,
      what: `file truncated to ${keep} clusters (of ${clusters})`,
      bytes: file.slice(0, keep * cs),
    };
  }
  const bytes = file.slice();
  const what = DAMAGERS[kind](rng, base, bytes);
  return what === undefined ? undefined : { kind, what, bytes };
}
