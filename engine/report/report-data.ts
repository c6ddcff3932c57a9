// Everything a report shows, as plain data: built once from a check result (and a repair, when
// there was one), then rendered as HTML or JSON. The app's report view reads the same structure.
import * as C from '../format/constants.js';
import type { Anomaly, CheckResult, QemuCounters, Severity } from '../check/types.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { FixNote, Refusal, RepairPlan } from '../repair/plan.js';
import { VERSION } from '../base/version.js';
import { humanSummary, qemuJsonObject } from '../check/qemu-text.js';
import { lostTablesSummary, plainVerdict, type PlainVerdict } from '../contract/verdict.js';
import { kindTitle } from '../contract/kind-titles.js';

export interface ImageSummary {
  path: string;
  fileSize: number;
  virtualSize: number;
  clusterSize: number;
  /** 2 or 3 (QEMU's compat 0.10 / 1.1). */
  version: number;
  refcountBits: number;
  dirty: boolean;
  corrupt: boolean;
  lazyRefcounts: boolean;
  extendedL2: boolean;
  compression: 'zlib' | 'zstd';
  encryption: 'none' | 'aes' | 'luks';
  backingFile?: string;
  backingFormat?: string;
  externalDataFile?: string;
  snapshots: number;
  bitmaps: number;
}

export interface FindingExample {
  firstCluster?: number;
  count: number;
  refcount?: number;
  references?: number;
  qemuMessage?: string;
}

/** The findings of one kind, summed, with a few examples. */
export interface FindingGroup {
  kind: string;
  title: string;
  severity: Severity;
  /** Clusters (or items) concerned, runs summed. */
  clusters: number;
  /** Stored records (runs) of this kind. */
  records: number;
  explanation: string;
  fix: string;
  beyondQemu: boolean;
  examples: FindingExample[];
}

/** A repair to include: its plan, and what happened when (if) it was applied. */
export interface ReportRepair {
  plan: RepairPlan;
  applied: boolean;
  /** The file that was repaired (a copy, or the image itself). */
  target?: string;
  journalPath?: string;
  /** The fresh check after the repair. */
  after?: { counters: QemuCounters; anomalies: readonly Anomaly[]; failed?: string };
}

export interface ReportExtras {
  repair?: ReportRepair;
  /** When the report is made (tests pass a fixed date). */
  now?: Date;
}

export interface ReportData {
  format: 'qcow2-doctor-report';
  schemaVersion: 1;
  tool: { name: 'qcow2-doctor'; version: string };
  generatedAt: string;
  image: ImageSummary;
  verdict: PlainVerdict;
  check: {
    counters: QemuCounters;
    failed?: string;
    elapsedSeconds: number;
    hostClusters: number;
    /** What `qemu-img check` prints for this image (summary) and its JSON fields. */
    qemuSummary: string;
    qemuJson: Record<string, unknown>;
  };
  findings: FindingGroup[];
  /** Lost tables that still map data (QEMU counts them among the leaks): how many, and the bytes at risk. */
  lostTables: { tables: number; l2Tables: number; bytesAtRisk: number };
  repair?: {
    mode: 'leaks' | 'all';
    rebuild: boolean;
    leaksFixed: number;
    corruptionsFixed: number;
    writes: number;
    fixes: FixNote[];
    refusals: Refusal[];
    expected: RepairPlan['expected'];
    failed?: string;
    applied: boolean;
    target?: string;
    journalPath?: string;
    after?: { counters: QemuCounters; verdict: PlainVerdict; failed?: string };
  };
}

const EXAMPLES = 20;
const SEVERITY_ORDER: Severity[] = ['error', 'leak', 'warning', 'info'];

export function imageSummary(path: string, image: Qcow2Image): ImageSummary {
  const h = image.header;
  const s: ImageSummary = {
    path,
    fileSize: image.fileSize,
    virtualSize: h.size,
    clusterSize: image.clusterSize,
    version: h.version,
    refcountBits: image.geo.refcountBits,
    dirty: image.isDirty,
    corrupt: image.isCorrupt,
    lazyRefcounts: (h.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n,
    extendedL2: image.geo.extendedL2,
    compression: h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
    encryption: h.cryptMethod === C.CRYPT_LUKS ? 'luks' : h.cryptMethod === C.CRYPT_AES ? 'aes' : 'none',
    snapshots: h.nbSnapshots,
    bitmaps: h.bitmaps?.nbBitmaps ?? 0,
  };
  if (h.backingFile !== undefined) s.backingFile = h.backingFile;
  if (h.backingFormat !== undefined) s.backingFormat = h.backingFormat;
  if (h.dataFileName !== undefined) s.externalDataFile = h.dataFileName;
  return s;
}

export function groupFindings(anomalies: readonly Anomaly[]): FindingGroup[] {
  const groups = new Map<string, FindingGroup>();
  for (const a of anomalies) {
    let g = groups.get(a.kind);
    if (!g) {
      g = {
        kind: a.kind,
        title: kindTitle(a.kind),
        severity: a.severity,
        clusters: 0,
        records: 0,
        explanation: a.explanation,
        fix: a.fix,
        beyondQemu: a.beyondQemu === true,
        examples: [],
      };
      groups.set(a.kind, g);
    }
    g.clusters += a.count;
    g.records++;
    if (g.examples.length < EXAMPLES) {
      const e: FindingExample = { count: a.count };
      if (a.firstCluster !== undefined) e.firstCluster = a.firstCluster;
      if (a.refcount !== undefined) e.refcount = a.refcount;
      if (a.references !== undefined) e.references = a.references;
      if (a.qemuMessage !== undefined) e.qemuMessage = a.qemuMessage;
      g.examples.push(e);
    }
  }
  return [...groups.values()].sort(
    (a, b) =>
      SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
      b.clusters - a.clusters ||
      (a.kind < b.kind ? -1 : 1),
  );
}

function lostTablesCount(anomalies: CheckResult['anomalies']): ReportData['lostTables'] {
  const s = lostTablesSummary(anomalies);
  return { tables: s?.tables ?? 0, l2Tables: s?.l2Tables ?? 0, bytesAtRisk: s?.bytesAtRisk ?? 0 };
}

export function buildReportData(result: CheckResult, image: Qcow2Image, extras: ReportExtras = {}): ReportData {
  const img = imageSummary(result.filename, image);
  const verdictIn = { counters: result.counters, anomalies: result.anomalies, dirty: img.dirty, corrupt: img.corrupt };
  const data: ReportData = {
    format: 'qcow2-doctor-report',
    schemaVersion: 1,
    tool: { name: 'qcow2-doctor', version: VERSION },
    generatedAt: (extras.now ?? new Date()).toISOString(),
    image: img,
    verdict: plainVerdict(result.failed !== undefined ? { ...verdictIn, failed: result.failed } : verdictIn),
    check: {
      counters: result.counters,
      elapsedSeconds: result.elapsed,
      hostClusters: result.hostClusters,
      qemuSummary: result.failed !== undefined ? `Check failed: ${result.failed}\n` : humanSummary(result.counters),
      qemuJson: qemuJsonObject(result.filename, result.counters),
    },
    findings: groupFindings(result.anomalies),
    lostTables: lostTablesCount(result.anomalies),
  };
  if (result.failed !== undefined) data.check.failed = result.failed;
  const r = extras.repair;
  if (r) {
    const p = r.plan;
    data.repair = {
      mode: p.mode,
      rebuild: p.rebuild,
      leaksFixed: p.leaksFixed,
      corruptionsFixed: p.corruptionsFixed,
      writes: p.steps.reduce((n, s) => n + s.writes.length, 0),
      fixes: p.fixes,
      refusals: p.refusals,
      expected: p.expected,
      applied: r.applied,
    };
    if (p.failed !== undefined) data.repair.failed = p.failed;
    if (r.target !== undefined) data.repair.target = r.target;
    if (r.journalPath !== undefined) data.repair.journalPath = r.journalPath;
    if (r.after) {
      const a = { counters: r.after.counters, anomalies: r.after.anomalies };
      data.repair.after = {
        counters: r.after.counters,
        verdict: plainVerdict(r.after.failed !== undefined ? { ...a, failed: r.after.failed } : a),
      };
      if (r.after.failed !== undefined) data.repair.after.failed = r.after.failed;
    }
  }
  return data;
}

/** Report extras from a repair outcome (engine/repair's RepairOutcome: plan, before/after analyses). */
export function repairExtras(outcome: {
  plan: RepairPlan;
  applied: boolean;
  target: string;
  journalPath?: string;
  after?: { counters: QemuCounters; anomalies: readonly Anomaly[]; failed?: string };
}): ReportExtras {
  const r: ReportRepair = { plan: outcome.plan, applied: outcome.applied, target: outcome.target };
  if (outcome.journalPath !== undefined) r.journalPath = outcome.journalPath;
  if (outcome.after) {
    const a = outcome.after;
    r.after =
      a.failed !== undefined
        ? { counters: a.counters, anomalies: a.anomalies, failed: a.failed }
        : { counters: a.counters, anomalies: a.anomalies };
  }
  return { repair: r };
}
