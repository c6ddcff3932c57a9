// Before a salvaged disk is written: how much it can occupy, against the free space where it goes.
// A few hundred KiB of hostile tables can map terabytes of guest data (every L1 entry naming one
// L2 table, every L2 entry one data cluster); the output is refused before its first byte instead
// of filling the file system.
import { statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2 } from '../format/l2-entry.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { GuestView, Reconstruction } from './types.js';

/** Guest clusters the output may hold data for: mapped data, and (with a backing disk) whatever it fills. */
export async function outputDataClusters(
  io: PositionalIO,
  fileSize: number,
  recon: Reconstruction,
  view: GuestView,
  backingSize: number,
): Promise<number> {
  const cs = recon.clusterSize;
  const step = recon.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const perTable = cs / step;
  const guestClusters = Math.ceil(view.virtualSize / cs);
  const backed = Math.ceil(Math.min(backingSize, view.virtualSize) / cs);
  // Per L2 table: clusters with data and with the zero flag, by table offset (hostile tables repeat).
  const tally = new Map<number, { data: number; zero: number }>();
  let data = 0;
  let inBacked = 0; // clusters below the backing size that the overlay itself decides (data or zero)
  for (const placement of view.l2.values()) {
    const first = placement.l1Index * perTable;
    if (first >= guestClusters) continue;
    const n = Math.min(perTable, guestClusters - first);
    let t = n === perTable ? tally.get(placement.host) : undefined;
    if (!t) {
      t = await countTable(io, fileSize, placement.host, n, step, recon.extendedL2);
      if (n === perTable) tally.set(placement.host, t);
    }
    data += t.data;
    // A table straddling the end of the backing disk is not subtracted: an overestimate of one table.
    if (first + n <= backed) inBacked += t.data + t.zero;
  }
  return data + Math.max(0, backed - inBacked);
}

async function countTable(
  io: PositionalIO,
  fileSize: number,
  host: number,
  entries: number,
  step: number,
  extendedL2: boolean,
): Promise<{ data: number; zero: number }> {
  const t = { data: 0, zero: 0 };
  if (host >= fileSize) return t;
  const bytes = await io.read(host, Math.min(entries * step, fileSize - host));
  for (let j = 0; (j + 1) * step <= bytes.length; j++) {
    const type = classifyL2(u32(bytes, j * step), u32(bytes, j * step + 4), extendedL2, false);
    if (type === ClusterType.Normal || type === ClusterType.Compressed) t.data++;
    else if (type === ClusterType.ZeroPlain || type === ClusterType.ZeroAlloc) t.zero++;
  }
  return t;
}

/** Bytes of a salvaged disk holding `dataClusters` clusters: sparse raw, or a fresh qcow2 with its tables. */
export function outputBytes(format: 'raw' | 'qcow2', dataClusters: number, cs: number, virtualSize: number): number {
  if (format === 'raw') return dataClusters * cs;
  const l2Tables = Math.min(dataClusters, Math.ceil(virtualSize / cs / (cs / 8)));
  const l1 = Math.ceil((Math.ceil(virtualSize / cs / (cs / 8)) * 8) / cs);
  const clusters = 1 + dataClusters + l2Tables + l1;
  const refcountBlocks = Math.ceil(clusters / (cs / 2)) + 1;
  return (clusters + 2 * refcountBlocks) * cs;
}

/** Refuse, in one line naming the sizes, when `needed` bytes do not fit the free space where `target` goes. */
export async function ensureFreeSpace(target: string, needed: number): Promise<void> {
  const dir = dirname(resolve(target));
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  if (needed > free)
    throw new Error(
      `not enough free space for the salvaged disk: it may take ${sizeText(needed)}, and ${dir} has ${sizeText(free)} free`,
    );
}

function sizeText(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]} (${n} bytes)`;
}
