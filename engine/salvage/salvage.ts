// The salvage, end to end: read what survives of the header, settle the cluster size, scan the
// file (resumable), reconstruct the mappings, and write each requested guest disk to a new file.
// The damaged image is only ever opened read-only.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import * as C from '../format/constants.js';
import { openInputFile } from '../io/input-file.js';
import { createOutputFile, writeOutputFile } from '../io/output-file.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';
import { inferClusterBits, inferExtendedL2, readHeaderHints, type HeaderHints } from './geometry-guess.js';
import { scanImage, type ScanFindings, type ScanGeometry } from './scan.js';
import { reconstruct } from './reconstruct.js';
import { ViewReader, type BackingDisk } from './guest-view.js';
import { Qcow2SequentialWriter } from './qcow2-output.js';
import { RawSparseWriter } from './raw-output.js';
import { ensureFreeSpace, outputBytes, outputDataClusters } from './output-space.js';
import { exportLostAndFound } from './lost-found.js';
import { salvageOutcome } from './salvage-outcome.js';
import { CLASS_NAMES } from '../format/cluster-content.js';
import type { GuestView, Reconstruction, SalvageReport, ViewReport } from './types.js';

export interface SalvageOptions {
  format?: 'raw' | 'qcow2';
  /** 'all', a snapshot ID or name; default: the active disk. */
  snapshot?: string;
  /** Overrides when the user knows better than the damaged file. */
  clusterSize?: number;
  virtualSize?: number;
  /** Backing file to use (default: the name the header records, relative to the image). */
  backing?: string;
  /** Place unreferenced L2 tables even when the active L1 looks intact. */
  placeOrphans?: boolean;
  /** Also copy every non-zero cluster nothing refers to into this file (with a map in the report). */
  lostFound?: string;
  /** Wrap each view's output before anything is written to it (e.g. to record every write: --record-log). */
  wrapOutput?: (io: PositionalIO) => Promise<PositionalIO>;
  /** Replace output files that already exist (never the image or its backing file). */
  overwrite?: boolean;
  /** The folder every output must stay in (serve: --root). */
  outputRoot?: string | undefined;
  /** Do not read any backing file: unallocated clusters read as zeros. */
  noBacking?: boolean;
  /** May this backing file be read (a served root confines reads)? Refused = treated as missing. */
  mayReadBacking?: (path: string) => Promise<boolean>;
  /** Path of a scan state file: resumed from if present, saved periodically and on cancel. */
  resumeState?: string;
  progress?: ProgressSink;
  cancel?: CancelToken;
  /** Backing chain depth (internal). */
  depth?: number;
}

export interface SalvageAnalysis {
  hints: HeaderHints;
  findings: ScanFindings;
  recon: Reconstruction;
  fileSize: number;
}

const STATE_KIND = 'qcow2-doctor-salvage-scan';

/** Scan and reconstruct without writing anything. */
export async function scanAndReconstruct(io: PositionalIO, opts: SalvageOptions = {}): Promise<SalvageAnalysis> {
  const fileSize = await io.size();
  if (fileSize === 0) throw new Error(`${io.name}: empty file (file size = 0)`);
  const first = await io.read(0, 2 * 1024 * 1024);
  const hints = readHeaderHints(first, fileSize);
  // Data that cannot be read from this file alone: refuse rather than export ciphertext or garbage.
  if (hints.cryptMethod)
    throw new Error(`salvage cannot decrypt guest data (header.crypt_method = ${hints.cryptMethod})`);
  if (hints.externalDataFile)
    throw new Error(
      'salvage does not support images whose data lives in an external data file (header.incompatible_features bit 2)',
    );
  let clusterBits: number;
  let source: 'header' | 'inferred' | 'user';
  if (opts.clusterSize) {
    clusterBits = Math.log2(opts.clusterSize);
    if (!Number.isInteger(clusterBits) || clusterBits < C.MIN_CLUSTER_BITS || clusterBits > C.MAX_CLUSTER_BITS)
      throw new Error(`--cluster-size must be a power of two from 512 to 2097152 (got ${opts.clusterSize})`);
    source = 'user';
  } else if (hints.intact && hints.clusterBits !== undefined) {
    clusterBits = hints.clusterBits;
    source = 'header';
  } else {
    const inferred = await inferClusterBits(io, fileSize);
    if (
      hints.clusterBits !== undefined &&
      (!inferred || inferred.evidence < 8 || inferred.clusterBits === hints.clusterBits)
    ) {
      clusterBits = hints.clusterBits;
      source = 'header';
    } else {
      clusterBits = inferred?.clusterBits ?? 16;
      source = 'inferred';
    }
  }
  const extendedL2 = hints.extendedL2 ?? (hints.intact ? false : await inferExtendedL2(io, fileSize, clusterBits));
  const geometry: ScanGeometry = { clusterBits, refcountOrder: hints.refcountOrder ?? 4, extendedL2 };
  const resume = opts.resumeState ? await loadState(opts.resumeState, io.name, fileSize, geometry) : undefined;
  const findings = resume?.complete
    ? resume
    : await scanImage(io, geometry, {
        progress: opts.progress,
        cancel: opts.cancel,
        resumeFrom: resume,
        checkpoint: opts.resumeState ? (f) => saveState(opts.resumeState!, io.name, f) : undefined,
      });
  if (opts.resumeState) await saveState(opts.resumeState, io.name, findings);
  if (!hints.intact && findings.tables.length === 0)
    throw new Error(
      `${io.name}: no qcow2 header and no qcow2 tables found (${findings.counts.reduce((a, b) => a + b, 0)} clusters scanned): not a qcow2 image, or nothing left to salvage`,
    );
  const recon = await reconstruct(io, hints, findings, {
    clusterBitsSource: source,
    virtualSize: opts.virtualSize,
    placeOrphans: opts.placeOrphans,
  });
  if (!hints.intact && !hints.backingFile && !hints.noBackingRecorded && !opts.backing && !opts.noBacking) {
    recon.backingUnknown = true;
    recon.warnings.push(
      'the header is damaged: if this image had a backing file, its name is lost; pass --backing FILE, or --no-backing if it had none (unallocated ranges were written as zeros and are reported lost until then)',
    );
  }
  return { hints, findings, recon, fileSize };
}

/** Salvage IMAGE into OUT (and OUT.snapshot-ID files with --snapshot all); never writes IMAGE. */
export async function salvageImage(
  imagePath: string,
  outPath: string | undefined,
  opts: SalvageOptions = {},
): Promise<SalvageReport> {
  // The cheap refusals first, before a long scan.
  if (outPath && resolve(outPath) === resolve(imagePath))
    throw new Error(`refusing to write the salvaged disk over the image itself (${resolve(outPath)})`);
  if (outPath && existsSync(outPath) && !opts.overwrite)
    throw new Error(`${resolve(outPath)} already exists (use --force to replace it)`);
  const io = await openInputFile(imagePath);
  let backing: OpenedBacking | undefined;
  try {
    const a = await scanAndReconstruct(io, opts);
    const { recon } = a;
    backing = opts.noBacking ? undefined : await openBacking(imagePath, recon, opts);
    if (
      recon.virtualSizeSource === 'guessed' &&
      backing &&
      !backing.disk.missing &&
      backing.disk.size > recon.virtualSize
    ) {
      // An overlay normally has its base's size: a better guess than the last mapped cluster.
      for (const v of recon.views) if (v.virtualSize === recon.virtualSize) v.virtualSize = backing.disk.size;
      recon.guesses.push(`virtual size taken from the backing file: ${backing.disk.size} bytes`);
      recon.virtualSize = backing.disk.size;
    }
    const views = selectViews(recon.views, opts.snapshot);
    if (outPath) {
      const protectedPaths = new Set([resolve(imagePath), ...(backing ? [resolve(backing.file)] : [])]);
      for (const v of views) {
        const target = resolve(outputName(outPath, v, views.length > 1));
        if (protectedPaths.has(target))
          throw new Error(
            `refusing to write the salvaged disk over ${target === resolve(imagePath) ? 'the image itself' : 'its backing file'} (${target})`,
          );
        if (existsSync(target) && !opts.overwrite)
          throw new Error(`${target} already exists (use --force to replace it)`);
      }
      const backingSize = backing && !backing.disk.missing ? backing.disk.size : 0;
      let need = 0;
      for (const v of views) {
        const clusters = await outputDataClusters(io, a.fileSize, recon, v, backingSize);
        need += outputBytes(opts.format ?? 'raw', clusters, recon.clusterSize, v.virtualSize);
      }
      await ensureFreeSpace(outPath, need);
    }
    const reports: ViewReport[] = [];
    for (const v of views) {
      const reader = new ViewReader(io, a.fileSize, recon, v, backing?.disk);
      const target = outPath ? outputName(outPath, v, views.length > 1) : undefined;
      const r = target
        ? await writeView(reader, target, opts)
        : await reader.export(async () => {}, undefined, opts.cancel);
      if (target) {
        r.output = target;
        r.format = opts.format ?? 'raw';
      }
      reports.push(r);
    }
    const report = buildReport(imagePath, a, reports, backing);
    if (opts.lostFound) {
      const lf = resolve(opts.lostFound);
      if (lf === resolve(imagePath) || (backing && lf === resolve(backing.file)))
        throw new Error(`refusing to write lost+found over the image or its backing file (${lf})`);
      if (existsSync(lf) && !opts.overwrite) throw new Error(`${lf} already exists (use --force to replace it)`);
      report.lostFound = await exportLostAndFound(io, recon, a.findings, opts.lostFound, {
        progress: opts.progress,
        cancel: opts.cancel,
        outputRoot: opts.outputRoot,
        overwrite: opts.overwrite,
      });
    }
    return report;
  } finally {
    await backing?.close();
    await io.close();
  }
}

function selectViews(views: GuestView[], which?: string): GuestView[] {
  if (!which) return views.filter((v) => v.kind === 'active');
  if (which === 'all') return views;
  const v =
    views.find((x) => x.kind === 'snapshot' && x.id === which) ??
    views.find((x) => x.kind === 'snapshot' && x.name === which);
  if (!v) {
    const known =
      views
        .filter((x) => x.kind === 'snapshot')
        .map((x) => `${x.id} (${x.name})`)
        .join(', ') || 'none found';
    throw new Error(`snapshot '${which}' not found among the recovered snapshots: ${known}`);
  }
  return [v];
}

function outputName(out: string, v: GuestView, many: boolean): string {
  if (!many || v.kind === 'active') return out;
  const ext = extname(out);
  const safe = v.id.replace(/[^A-Za-z0-9._-]/g, '_');
  return ext ? `${out.slice(0, -ext.length)}.snapshot-${safe}${ext}` : `${out}.snapshot-${safe}`;
}

async function writeView(reader: ViewReader, target: string, opts: SalvageOptions): Promise<ViewReport> {
  // Written under a hidden temporary name, given the output's name only when complete.
  const file = await createOutputFile(target, { root: opts.outputRoot, replace: opts.overwrite });
  const out = opts.wrapOutput ? await opts.wrapOutput(file.io) : file.io;
  const w =
    (opts.format ?? 'raw') === 'qcow2'
      ? new Qcow2SequentialWriter(out, Math.log2(reader.cs), reader.size)
      : new RawSparseWriter(out, reader.cs, reader.size);
  try {
    const report = await reader.export((g, d) => w.put(g, d), opts.progress, opts.cancel);
    // Durable before it takes its final name: a crash never leaves a half-written OUT.
    await w.finish();
    await file.commit();
    return report;
  } catch (e) {
    await w.abandon();
    await file.discard();
    throw e;
  }
}

interface OpenedBacking {
  file: string;
  format?: string;
  disk: BackingDisk;
  report?: SalvageReport;
  /** Close the backing file (and its own backing chain). */
  close(): Promise<void>;
}

/** The backing disk: a raw file, or a qcow2 file salvaged the same way (it may be damaged too). */
async function openBacking(
  imagePath: string,
  recon: Reconstruction,
  opts: SalvageOptions,
): Promise<OpenedBacking | undefined> {
  const name = opts.backing ?? recon.backingFile;
  if (!name) return undefined;
  const depth = (opts.depth ?? 0) + 1;
  const file = opts.backing ? resolve(name) : isAbsolute(name) ? name : join(dirname(resolve(imagePath)), name);
  const missing = (): OpenedBacking => ({
    file,
    format: recon.backingFormat,
    close: async () => {},
    disk: { name: file, missing: true, size: 0, read: async (_o, l) => new Uint8Array(l) },
  });
  if (!existsSync(file) || depth > C.MAX_BACKING_CHAIN_DEPTH) return missing();
  if (opts.mayReadBacking && !(await opts.mayReadBacking(file))) {
    recon.warnings.push(`backing file ${name} may not be read here: treated as missing`);
    return missing();
  }
  // Never a FIFO or a device: refused on the descriptor before anything is read.
  const io = await openInputFile(file).catch((e: { code?: string }) => {
    if (e.code !== 'EFTYPE') throw e;
    recon.warnings.push(`backing file ${name} is not a regular file: treated as missing`);
    return undefined;
  });
  if (!io) return missing();
  const head = await io.read(0, 4);
  const isQcow2 =
    head.length === 4 && ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0 === C.QCOW2_MAGIC;
  if (recon.backingFormat === 'raw' || (!isQcow2 && recon.backingFormat !== 'qcow2')) {
    const size = await io.size();
    return {
      file,
      format: 'raw',
      close: () => io.close(),
      disk: {
        name: file,
        missing: false,
        size,
        read: async (o, l) => {
          const b = new Uint8Array(l);
          if (o < size) b.set(await io.read(o, Math.min(l, size - o)));
          return b;
        },
      },
    };
  }
  // A qcow2 backing file: analyse it like the overlay; its own backing chain recursively.
  let sub: SalvageAnalysis;
  let subBacking: OpenedBacking | undefined;
  try {
    sub = await scanAndReconstruct(io, { depth });
    subBacking = await openBacking(file, sub.recon, { depth, mayReadBacking: opts.mayReadBacking });
  } catch (e) {
    await io.close();
    throw e;
  }
  const view = sub.recon.views.find((v) => v.kind === 'active')!;
  const reader = new ViewReader(io, sub.fileSize, sub.recon, view, subBacking?.disk);
  const report = buildReport(file, sub, [], subBacking);
  return {
    file,
    format: 'qcow2',
    report,
    close: async () => {
      await subBacking?.close();
      await io.close();
    },
    disk: {
      name: file,
      missing: false,
      size: view.virtualSize,
      read: (o, l) => reader.read(o, l),
    },
  };
}

function buildReport(image: string, a: SalvageAnalysis, views: ViewReport[], backing?: OpenedBacking): SalvageReport {
  const { recon, findings } = a;
  const counts: Record<string, number> = {};
  CLASS_NAMES.forEach((n, i) => {
    counts[n] = findings.counts[i] ?? 0;
  });
  return {
    image,
    fileSize: a.fileSize,
    clusterSize: recon.clusterSize,
    clusterSizeSource: recon.clusterSizeSource,
    virtualSize: recon.virtualSize,
    virtualSizeSource: recon.virtualSizeSource,
    extendedL2: recon.extendedL2,
    compression:
      recon.compressionType === undefined
        ? 'detected per cluster'
        : recon.compressionType === C.COMPRESSION_ZSTD
          ? 'zstd'
          : 'zlib',
    header: recon.structures.header,
    headerDamage: recon.structures.headerDamage,
    backing: backing
      ? { file: backing.file, format: backing.format, found: !backing.disk.missing, report: backing.report }
      : undefined,
    scan: {
      clusters: findings.counts.reduce((x, y) => x + y, 0),
      complete: findings.complete,
      counts,
      capped: findings.capped,
    },
    structures: recon.structures,
    disks: recon.views.map((v) => ({ kind: v.kind, id: v.id, name: v.name, virtualSize: v.virtualSize })),
    views,
    guesses: recon.guesses,
    warnings: recon.warnings,
    outcome: views.length ? salvageOutcome(views) : undefined,
  };
}

// ---- resumable scan state ----

interface StateFile {
  kind: string;
  version: 1;
  image: string;
  fileSize: number;
  mtimeMs: number;
  findings: ScanFindings;
}

async function saveState(path: string, image: string, findings: ScanFindings): Promise<void> {
  const st = await stat(image);
  const s: StateFile = {
    kind: STATE_KIND,
    version: 1,
    image: resolve(image),
    fileSize: findings.fileSize,
    mtimeMs: st.mtimeMs,
    findings,
  };
  await writeOutputFile(path, JSON.stringify(s), { replace: true });
}

async function loadState(
  path: string,
  image: string,
  fileSize: number,
  geometry: ScanGeometry,
): Promise<ScanFindings | undefined> {
  if (!existsSync(path)) return undefined;
  let s: StateFile;
  try {
    s = JSON.parse(await readFile(path, 'utf8')) as StateFile;
  } catch {
    throw new Error(`scan state ${path} is not readable JSON (delete it to start over)`);
  }
  const st = await stat(image);
  if (s.kind !== STATE_KIND || s.version !== 1)
    throw new Error(`${path} is not a salvage scan state (kind = ${String(s.kind)})`);
  if (s.fileSize !== fileSize || s.mtimeMs !== st.mtimeMs || basename(s.image) !== basename(image))
    throw new Error(
      `scan state ${path} belongs to another file or the image changed since (size ${s.fileSize}, now ${fileSize}); delete it to start over`,
    );
  if (s.findings.geometry.clusterBits !== geometry.clusterBits) return undefined;
  return s.findings;
}
