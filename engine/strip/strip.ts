// `strip`: a copy of an image that keeps every metadata structure byte-identical at the same
// offsets and drops all guest data (never written: the copy is sparse and reads as zeros there), so
// a customer can send it to support and the same findings reproduce on it.
import { realpath, stat } from 'node:fs/promises';
import { openInputFile } from '../io/input-file.js';
import { createOutputFile, type OutputFile } from '../io/output-file.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';
import { INCOMPAT_DATA_FILE } from '../format/constants.js';
import { META_KIND_LABELS, mapMetadata, type MetaKind, type MetaRange } from './metadata-map.js';
import { scanL2ForClaims } from './guest-claims.js';
import { SHAPED, countMalformed } from './shape.js';
import { hexOff } from './notes.js';

export interface StripConflict {
  cluster: number;
  kinds: MetaKind[];
  /** The L2 entry that maps the cluster as guest data, if one does. */
  claimedBy?: string;
  kept: boolean;
}

export interface StripResult {
  fileSize: number;
  clusterSize: number;
  /** Bytes copied from the original (metadata), after dropping all-zero chunks from the count. */
  keptBytes: number;
  /** Per kind of structure: how many and how many bytes. */
  structures: Partial<Record<MetaKind, { count: number; bytes: number }>>;
  conflicts: StripConflict[];
  /** What was not copied because a pointer was unaligned or out of range, and similar remarks. */
  notes: string[];
  /** Set when the header itself was refused (only the header was kept). */
  headerRefusal?: string;
  /** The backing file the header names (kept in the copy's header as is), and its format. */
  backingFile?: string;
  backingFormat?: string;
}

export interface StripOptions {
  cancel?: CancelToken;
  onProgress?: ProgressSink;
  /** Wrap the output before anything is written to it (e.g. to record every write: --record-log). */
  wrapOutput?: (io: PositionalIO) => Promise<PositionalIO>;
}

const COPY_CHUNK = 4 << 20;
/** Pointer tables the header names directly: judged by their content only on enough evidence. */
const HEADER_TABLES: ReadonlySet<MetaKind> = new Set<MetaKind>(['l1', 'refcount-table']);
const MIN_EVIDENCE = 4;

/** Strip `src` into `dst` (an empty writable backend). */
export async function stripIO(src: PositionalIO, dst: PositionalIO, opts: StripOptions = {}): Promise<StripResult> {
  const map = await mapMetadata(src);
  const cs = map.clusterSize;
  opts.onProgress?.({ fraction: 0.05, stage: 'finding metadata' });
  if (map.header?.backingFile)
    map.notes.add(
      `the image has a backing file '${map.header.backingFile}': QEMU opens it to check this copy, so strip it too and keep the same relative name (strip --with-backing does that)`,
    );

  const kindsByCluster = new Map<number, Set<MetaKind>>();
  for (const r of map.ranges) {
    for (let c = Math.floor(r.offset / cs); c <= Math.floor((r.offset + r.length - 1) / cs); c++) {
      let s = kindsByCluster.get(c);
      if (!s) kindsByCluster.set(c, (s = new Set()));
      s.add(r.kind);
    }
  }

  const conflicts: StripConflict[] = [];
  const dropped = new Set<number>();
  if (map.header && map.geo) {
    const geo = map.geo;
    const header = map.header;
    const external = (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
    const metaClusters = new Set(kindsByCluster.keys());
    const claims = new Map<number, string>();
    const good = new Set<number>();
    const bad = new Map<number, string>();
    for (const r of map.ranges) {
      if (!SHAPED.has(r.kind) && !HEADER_TABLES.has(r.kind)) continue;
      for (let c = Math.floor(r.offset / cs); c * cs < r.offset + r.length; c++) {
        opts.cancel?.throwIfCancelled();
        const start = Math.max(r.offset, c * cs);
        const bytes = await readPadded(src, start, Math.min(r.offset + r.length, (c + 1) * cs) - start);
        if (r.kind === 'l2') scanL2ForClaims(bytes, start, geo, map.fileSize, external, metaClusters, claims);
        const firstCluster = r.index !== undefined ? r.index * geo.refcountBlockEntries : undefined;
        const shape = countMalformed(r.kind, bytes, {
          geo,
          fileSize: map.fileSize,
          nbSnapshots: header.nbSnapshots,
          firstCluster,
        });
        // A table the header points at is trusted unless it clearly is none (enough entries, most malformed).
        const looksWrong =
          shape.malformed * 2 > shape.nonzero && (!HEADER_TABLES.has(r.kind) || shape.nonzero >= MIN_EVIDENCE);
        if (!looksWrong) good.add(c);
        else bad.set(c, `${shape.malformed} of ${shape.nonzero} entries malformed`);
      }
    }
    for (const c of [...metaClusters].sort((a, b) => a - b)) {
      const claimedBy = claims.get(c);
      const why = bad.get(c);
      if (claimedBy === undefined && why === undefined) continue;
      const kinds = [...(kindsByCluster.get(c) ?? [])];
      const kept =
        kinds.some((k) => !SHAPED.has(k) && !HEADER_TABLES.has(k) && k !== 'bitmap-data') ||
        good.has(c) ||
        (kinds.includes('bitmap-data') && claimedBy === undefined && why === undefined);
      if (!kept) dropped.add(c);
      const conflict: StripConflict = { cluster: c, kinds, kept };
      if (claimedBy !== undefined) conflict.claimedBy = claimedBy;
      conflicts.push(conflict);
      const what = kinds.map((k) => META_KIND_LABELS[k]).join(' / ');
      const where = `cluster ${c} (${hexOff(c * cs)})`;
      const claim = claimedBy !== undefined ? ` and ${claimedBy} maps it as guest data` : '';
      map.notes.add(
        kept
          ? `${where} holds the ${what}${claim}; its content looks like that, so it was kept`
          : `${where} is pointed at as ${what}${claim}, but its content does not look like that (${why ?? 'not a table'}); zeroed to keep guest data out (findings about it will differ)`,
      );
    }
  }
  opts.onProgress?.({ fraction: 0.1, stage: 'copying metadata' });

  const intervals = keptIntervals(map.ranges, dropped, cs);
  const total = intervals.reduce((n, [a, b]) => n + (b - a), 0);
  await dst.truncate(map.fileSize);
  let done = 0;
  let keptBytes = 0;
  for (const [start, end] of intervals) {
    for (let pos = start; pos < end; pos += COPY_CHUNK) {
      opts.cancel?.throwIfCancelled();
      const buf = await src.read(pos, Math.min(COPY_CHUNK, end - pos));
      // Stay sparse: the copy already reads as zeros where the original holds zeros.
      if (!allZero(buf)) {
        await dst.write(pos, buf);
        keptBytes += buf.length;
      }
      done += buf.length;
      opts.onProgress?.({ fraction: 0.1 + (0.9 * done) / Math.max(1, total), stage: 'copying metadata' });
    }
  }
  await dst.flush();

  const structures: StripResult['structures'] = {};
  for (const r of map.ranges) {
    const s = (structures[r.kind] ??= { count: 0, bytes: 0 });
    s.count++;
    s.bytes += r.length;
  }
  const result: StripResult = {
    fileSize: map.fileSize,
    clusterSize: cs,
    keptBytes,
    structures,
    conflicts,
    notes: map.notes.all(),
  };
  if (map.headerRefusal) result.headerRefusal = map.headerRefusal;
  if (map.header?.backingFile) result.backingFile = map.header.backingFile;
  if (map.header?.backingFormat) result.backingFormat = map.header.backingFormat;
  return result;
}

/** Strip the image at `srcPath` into a new file `outPath` (refuses to overwrite unless `force`). */
export async function stripFile(
  srcPath: string,
  outPath: string,
  opts: StripOptions & { force?: boolean; outputRoot?: string | undefined } = {},
): Promise<StripResult> {
  const srcReal = await realpath(srcPath);
  const existing = await stat(outPath).catch(() => undefined);
  if (existing) {
    if ((await realpath(outPath)) === srcReal || existing.ino === (await stat(srcReal)).ino)
      throw new Error(`strip: the output ${outPath} is the input image itself`);
    if (!opts.force) throw new Error(`strip: ${outPath} already exists (use --force to replace it)`);
  }
  const src = await openInputFile(srcPath);
  let dst: OutputFile | undefined;
  try {
    dst = await createOutputFile(outPath, { root: opts.outputRoot, replace: opts.force });
    const result = await stripIO(src, opts.wrapOutput ? await opts.wrapOutput(dst.io) : dst.io, opts);
    await dst.commit();
    dst = undefined;
    return result;
  } catch (err) {
    await dst?.discard();
    throw err;
  } finally {
    await src.close();
  }
}

/** The ranges to copy, sorted and merged, with dropped clusters cut out. */
function keptIntervals(
  ranges: readonly MetaRange[],
  dropped: ReadonlySet<number>,
  cs: number,
): Array<[number, number]> {
  const pieces: Array<[number, number]> = [];
  for (const r of ranges) {
    let start = r.offset;
    const end = r.offset + r.length;
    if (dropped.size === 0) {
      pieces.push([start, end]);
      continue;
    }
    for (let c = Math.floor(start / cs); c * cs < end; c++) {
      const cEnd = Math.min(end, (c + 1) * cs);
      if (dropped.has(c)) {
        if (start < c * cs) pieces.push([start, c * cs]);
        start = cEnd;
      }
    }
    if (start < end) pieces.push([start, end]);
  }
  pieces.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const p of pieces) {
    const last = merged[merged.length - 1];
    if (last && p[0] <= last[1]) last[1] = Math.max(last[1], p[1]);
    else merged.push([p[0], p[1]]);
  }
  return merged;
}

function allZero(buf: Uint8Array): boolean {
  const words = Math.floor(buf.length / 4);
  const v = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteOffset % 4 === 0 ? words : 0);
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) return false;
  for (let i = v.length * 4; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
