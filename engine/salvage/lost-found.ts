// "Lost and found": the non-zero clusters of the file that nothing recovered refers to (guest data
// under a destroyed L2 table, leaked or freed clusters) copied in host order into one file, with a
// map of where each run came from. Their guest position is unknown; file-carving tools can still
// find files in them. One bit per host cluster marks what is accounted for (bounded below).
import { u32 } from '../format/bytes.js';
import { classifyL2, ClusterType, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import * as C from '../format/constants.js';
import type { PositionalIO } from '../io/positional-io.js';
import { createOutputFile } from '../io/output-file.js';
import { CancelToken, type ProgressSink } from '../base/task-control.js';
import { isZero } from '../format/cluster-content.js';
import type { ScanFindings } from './scan.js';
import type { Reconstruction } from './types.js';

/** The bitmap of accounted clusters may take at most this many bytes (2^31 clusters). */
const MAX_BITMAP = 256 * 1024 * 1024;
const MAX_RUNS = 10_000;

export interface LostFoundReport {
  file: string;
  clusters: number;
  bytes: number;
  /** Runs of host clusters copied: host offset, length, offset in the lost+found file. */
  runs: Array<{ host: number; length: number; at: number }>;
  runsCapped: boolean;
}

export async function exportLostAndFound(
  io: PositionalIO,
  recon: Reconstruction,
  findings: ScanFindings,
  target: string,
  opts: {
    progress?: ProgressSink;
    cancel?: CancelToken;
    outputRoot?: string | undefined;
    overwrite?: boolean | undefined;
  } = {},
): Promise<LostFoundReport> {
  const cs = recon.clusterSize;
  const fileSize = findings.fileSize;
  const nClusters = Math.ceil(fileSize / cs);
  if (nClusters / 8 > MAX_BITMAP)
    throw new Error(`--lost-found: ${nClusters} clusters are too many to track (at most ${MAX_BITMAP * 8})`);
  const used = new Uint8Array(Math.ceil(nClusters / 8));
  const mark = (off: number, len = cs): void => {
    for (let c = Math.floor(off / cs); c * cs < off + len && c < nClusters; c++) used[c >> 3]! |= 1 << (c & 7);
  };
  const isUsed = (c: number): boolean => (used[c >> 3]! & (1 << (c & 7))) !== 0;

  // Metadata: cluster 0, every table-like cluster, refcount blocks, snapshot tables, L1 tables.
  mark(0);
  for (const t of findings.tables) mark(t.offset);
  for (const c of recon.metadata?.keys() ?? []) mark(c * cs);
  // With an intact header its refcount table names the blocks (in `metadata`): another cluster that
  // reads like one (small 16-bit numbers) may be guest data, and is copied.
  if (recon.structures.header !== 'intact') for (const o of findings.refcountBlocks) mark(o);
  for (const o of findings.snapshotTables) mark(o);
  for (const v of recon.views)
    if (v.l1Offset !== undefined) mark(v.l1Offset, Math.max(cs, Math.ceil(v.virtualSize / (cs * (cs / 8))) * 8));
  // Data reached by any recovered disk.
  const step = recon.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const geo = { csizeShift: 62 - (recon.clusterBits - 8), csizeMask: 2 ** (recon.clusterBits - 8) - 1 } as Parameters<
    typeof decodeCompressed
  >[2];
  const seen = new Set<number>();
  for (const v of recon.views)
    for (const p of v.l2.values()) {
      if (seen.has(p.host)) continue;
      seen.add(p.host);
      const l2 = await io.read(p.host, cs);
      for (let q = 0; q + step <= l2.length; q += step) {
        const hi = u32(l2, q);
        const lo = u32(l2, q + 4);
        const type = classifyL2(hi, lo, recon.extendedL2, false);
        if (type === ClusterType.Compressed) {
          const d = decodeCompressed(hi, lo, geo);
          mark(d.offset, d.size);
        } else if (type === ClusterType.Normal || type === ClusterType.ZeroAlloc) mark(l2Offset(hi, lo));
      }
    }

  const file = await createOutputFile(target, { root: opts.outputRoot, replace: opts.overwrite });
  const out = file.io;
  const report: LostFoundReport = { file: target, clusters: 0, bytes: 0, runs: [], runsCapped: false };
  const chunk = Math.max(cs, Math.floor((8 * 1024 * 1024) / cs) * cs);
  const cancel = opts.cancel ?? CancelToken.none;
  try {
    for (let pos = 0; pos < fileSize; pos += chunk) {
      cancel.throwIfCancelled();
      opts.progress?.({ fraction: pos / fileSize, stage: 'collecting unreferenced clusters' });
      const buf = await io.read(pos, Math.min(chunk, fileSize - pos));
      for (let o = 0; o < buf.length; o += cs) {
        const c = (pos + o) / cs;
        const piece = buf.subarray(o, o + cs);
        if (isUsed(c) || isZero(piece, 0, piece.length)) continue;
        const at = report.clusters * cs;
        await out.write(at, piece);
        report.clusters++;
        report.bytes += piece.length;
        const last = report.runs[report.runs.length - 1];
        if (last && last.host + last.length === pos + o && last.at + last.length === at) last.length += piece.length;
        else if (report.runs.length < MAX_RUNS) report.runs.push({ host: pos + o, length: piece.length, at });
        else report.runsCapped = true;
      }
    }
    await file.commit();
  } catch (e) {
    await file.discard();
    throw e;
  }
  opts.progress?.({ fraction: 1, stage: 'done' });
  return report;
}
