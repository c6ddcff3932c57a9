// The content scan: read the whole file once, in large sequential reads, classify every host
// cluster and remember only what reconstruction needs (pointer-table summaries, refcount-block and
// snapshot-table positions, counts). Memory grows with the amount of metadata found, not with the
// file size. The scan can stop (cancel) and resume from a saved position.
import type { PositionalIO } from '../io/positional-io.js';
import { readInto, uninitialized } from './bulk-read.js';
import { CancelToken, type ProgressSink } from '../base/task-control.js';
import { CancelledError } from '../base/errors.js';
import {
  classifyCluster,
  ClusterClass,
  CLASS_NAMES,
  type ClassifyContext,
  type PointerTableSummary,
} from '../format/cluster-content.js';

export interface ScanGeometry {
  clusterBits: number;
  refcountOrder: number;
  extendedL2: boolean;
}

export interface ScanFindings {
  geometry: ScanGeometry;
  fileSize: number;
  /** Bytes scanned so far (equals fileSize when complete). */
  position: number;
  complete: boolean;
  /** Clusters per class, indexed by ClusterClass. */
  counts: number[];
  tables: PointerTableSummary[];
  refcountBlocks: number[];
  snapshotTables: number[];
  /** Lists were capped (absurd amounts of table-like content); counts stay exact. */
  capped: boolean;
}

export interface ScanOptions {
  progress?: ProgressSink;
  cancel?: CancelToken;
  /** Findings of an interrupted scan of the same file to continue from. */
  resumeFrom?: ScanFindings;
  /** Called periodically (and on cancel) with the findings so far, to persist them. */
  checkpoint?: (f: ScanFindings) => Promise<void>;
  /** Bytes between checkpoints. */
  checkpointEvery?: number;
  /** Bytes per read (rounded to whole clusters). */
  readSize?: number;
}

/** Upper bound on remembered candidates: a few million small records. */
const MAX_LIST = 4_000_000;

export function emptyFindings(geometry: ScanGeometry, fileSize: number): ScanFindings {
  return {
    geometry,
    fileSize,
    position: 0,
    complete: false,
    counts: new Array<number>(CLASS_NAMES.length).fill(0),
    tables: [],
    refcountBlocks: [],
    snapshotTables: [],
    capped: false,
  };
}

export async function scanImage(
  io: PositionalIO,
  geometry: ScanGeometry,
  opts: ScanOptions = {},
): Promise<ScanFindings> {
  const fileSize = await io.size();
  const cs = 2 ** geometry.clusterBits;
  const f =
    opts.resumeFrom &&
    opts.resumeFrom.fileSize === fileSize &&
    opts.resumeFrom.geometry.clusterBits === geometry.clusterBits
      ? opts.resumeFrom
      : emptyFindings(geometry, fileSize);
  const ctx: ClassifyContext = {
    clusterSize: cs,
    fileSize,
    targetLimit: Math.max(fileSize * 4, fileSize + 2 ** 30),
    refcountOrder: geometry.refcountOrder,
    extendedL2: geometry.extendedL2,
  };
  const readSize = Math.max(cs, Math.floor((opts.readSize ?? 8 * 1024 * 1024) / cs) * cs);
  const cancel = opts.cancel ?? CancelToken.none;
  const every = opts.checkpointEvery ?? 256 * 1024 * 1024;
  let sinceCheckpoint = 0;
  // Two buffers, reused: the next read runs while this one is classified.
  const bufSize = Math.min(readSize, Math.max(cs, Math.ceil(fileSize / cs) * cs));
  const bufs = [uninitialized(bufSize), uninitialized(bufSize)];
  let turn = 0;
  const start = (pos: number): Promise<number> | undefined =>
    pos < fileSize ? readInto(io, pos, bufs[turn++ % 2]!, Math.min(bufSize, fileSize - pos)) : undefined;
  let ahead = start(f.position);
  try {
    while (ahead) {
      const buf = bufs[(turn - 1) % 2]!;
      const got = await ahead;
      ahead = undefined;
      if (got === 0) break;
      if (cancel.isCancelled) {
        if (opts.checkpoint) await opts.checkpoint(f);
        throw new CancelledError();
      }
      ahead = start(f.position + got);
      classifyChunk(f, buf, got, ctx);
      f.position += got;
      sinceCheckpoint += got;
      opts.progress?.({ fraction: f.position / fileSize, stage: 'scanning clusters' });
      if (opts.checkpoint && sinceCheckpoint >= every) {
        sinceCheckpoint = 0;
        await opts.checkpoint(f);
      }
    }
  } finally {
    // Never leave a read running into a buffer (or on a descriptor) the caller may close.
    await ahead?.catch(() => 0);
  }
  f.position = fileSize;
  f.complete = true;
  return f;
}

/** Classify the clusters of buf[0, got), which starts at host offset f.position. */
function classifyChunk(f: ScanFindings, buf: Uint8Array, got: number, ctx: ClassifyContext): void {
  const cs = ctx.clusterSize;
  // A file that ends mid-cluster: the tail is classified zero-padded, as readers see it.
  const whole = got % cs === 0 ? buf.subarray(0, got) : padTo(buf.subarray(0, got), Math.ceil(got / cs) * cs);
  for (let o = 0; o < whole.length; o += cs) {
    const c = classifyCluster(whole, o, f.position + o, ctx);
    f.counts[c.cls]!++;
    if (c.cls === ClusterClass.PointerTable && c.table) push(f, f.tables, c.table);
    else if (c.cls === ClusterClass.RefcountBlock) push(f, f.refcountBlocks, f.position + o);
    else if (c.cls === ClusterClass.SnapshotTable) push(f, f.snapshotTables, f.position + o);
  }
}

function push<T>(f: ScanFindings, list: T[], v: T): void {
  if (list.length < MAX_LIST) list.push(v);
  else f.capped = true;
}

function padTo(buf: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(len);
  out.set(buf);
  return out;
}
