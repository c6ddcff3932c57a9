// What every step of the reconstruction shares: the file, its geometry, the table roles decided so
// far, and the guesses and warnings the report will show.
import * as C from '../format/constants.js';
import type { PointerTableSummary } from '../format/cluster-content.js';
import { isZero } from '../format/cluster-content.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { HeaderHints } from './geometry-guess.js';
import type { ScanFindings } from './scan.js';
import { ClusterCache, type RefcountProbe } from './table-reader.js';

export type TableRole = 'l1' | 'l2' | 'reftable';

export interface ReconstructState {
  io: PositionalIO;
  hints: HeaderHints;
  findings: ScanFindings;
  clusterBits: number;
  cs: number;
  extendedL2: boolean;
  /** Bytes per L2 entry (8, or 16 with extended L2). */
  step: number;
  l2Entries: number;
  /** Guest bytes one L2 table maps. */
  coverage: number;
  fileSize: number;
  /** Offsets beyond this are implausible for any pointer. */
  limit: number;
  cache: ClusterCache;
  tables: Map<number, PointerTableSummary>;
  refblocks: Set<number>;
  role: Map<number, TableRole>;
  probe?: RefcountProbe;
  /** L2-like tables used by no view (stale copies, leaks, or guest data that looks like a table). */
  unusedL2: number[];
  guesses: string[];
  warnings: string[];
}

export function newState(io: PositionalIO, hints: HeaderHints, findings: ScanFindings): ReconstructState {
  const cb = findings.geometry.clusterBits;
  const cs = 2 ** cb;
  const extendedL2 = findings.geometry.extendedL2;
  const step = extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const l2Entries = cs / step;
  const fileSize = findings.fileSize;
  return {
    io,
    hints,
    findings,
    clusterBits: cb,
    cs,
    extendedL2,
    step,
    l2Entries,
    coverage: cs * l2Entries,
    fileSize,
    limit: Math.max(fileSize * 4, fileSize + 2 ** 30),
    cache: new ClusterCache(io, cs),
    tables: new Map(findings.tables.map((t) => [t.offset, t])),
    refblocks: new Set(findings.refcountBlocks),
    role: new Map(),
    unusedL2: [],
    guesses: [],
    warnings: [],
  };
}

export const isL2 = (st: ReconstructState, o: number): boolean => st.role.get(o) === 'l2';

/** Table bytes that exist in the file (entries past its end read as zero, and cost nothing). */
export async function readInFile(st: ReconstructState, offset: number, length: number): Promise<Uint8Array> {
  if (offset >= st.fileSize) return new Uint8Array(0);
  return st.io.read(offset, Math.min(length, st.fileSize - offset));
}

export async function allZero(st: ReconstructState, from: number, to: number): Promise<boolean> {
  for (let o = from; o < to; o += st.cs) if (!isZero(await st.cache.get(o), 0, st.cs)) return false;
  return true;
}

export function hx(n: number): string {
  return `0x${n.toString(16)}`;
}
