// After the compare: read the clusters no live structure refers to (leaked, or free inside the file)
// and ask the lost-table detector which of them are tables still mapping data. Each becomes a
// 'lost-table' anomaly; the leak anomalies over those clusters and their data stop saying "no data
// is lost". QEMU's counters and messages are untouched (QEMU counts these clusters as leaks).
import { HostRole } from '../contract/roles.js';
import type { Anomaly } from '../contract/findings.js';
import { u32 } from '../format/bytes.js';
import { looksLikeRefcountBlock } from '../format/cluster-content.js';
import { l1Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import { readRanges } from '../image/traversal/batch-reads.js';
import { BitmapError, bitmapsActive, loadBitmapDirectory } from './bitmaps.js';
import { reportOrphanedData } from './lost-tables-orphaned-data.js';
import { anyIn, examineCluster, holdsData, findLostTables, type LostTable, type TableEvidence } from './lost-tables.js';
import { BATCH_BYTES, type CheckState } from './state.js';

/** Bytes of unreferenced clusters read that turn out to be neither tables nor their data, at most. */
const BUDGET_WITH_LEAKS = 256 * 1024 * 1024;
/** The same for images without leaks (only free clusters inside the file to look at). */
const BUDGET_WITHOUT_LEAKS = 16 * 1024 * 1024;

export async function reportLostTables(state: CheckState): Promise<void> {
  const examined = await examineUnreferenced(state);
  const atRisk = new Uint8Array(state.fileClusters);
  await reportTables(state, examined.evidence, atRisk);
  await reportOrphanedData(state, examined.nonZero, atRisk);
}

/** The lost tables among the candidates, as anomalies; marks them and the data only they map in `atRisk`. */
async function reportTables(state: CheckState, candidates: TableEvidence[], atRisk: Uint8Array): Promise<void> {
  const evidence = await withoutOtherTables(state, candidates);
  evidence.push(...(await snapshotHeldTables(state)));
  if (!evidence.length) return;
  const cs = state.clusterSize;
  const span = state.image.geo.l2Entries * cs;
  const l1 = state.image.l1;
  const freeL1Slots: number[] = [];
  for (let i = 0; i < l1.length / 8 && i * span < state.image.virtualSize; i++)
    if (u32(l1, 8 * i) === 0 && u32(l1, 8 * i + 4) === 0) freeL1Slots.push(i);
  const metadata = Float64Array.from(state.metaRoles.keys()).sort();
  const tables = findLostTables(evidence, {
    clusterSize: cs,
    l2Entries: state.image.geo.l2Entries,
    virtualSize: state.image.virtualSize,
    unreferencedIn: (start, count) => {
      let n = 0;
      for (let k = start; k < start + count && k < state.fileClusters; k++) if (state.refAt(k) === 0) n++;
      return n;
    },
    liveMetadataIn: (start, count) => anyIn(metadata, start, start + count),
    liveRole: (k) => liveRole(state.metaRoles.get(k)),
    freeL1Slots,
  });
  if (!tables.length) return;
  for (const t of tables) {
    atRisk[t.cluster] = 1;
    for (const r of t.dataRanges)
      for (let k = r.start; k < r.start + r.count && k < atRisk.length; k++) if (state.refAt(k) === 0) atRisk[k] = 1;
    state.anomalies.cut();
    state.anomalies.add('lost-table', { cluster: t.cluster });
    state.anomalies.cut();
    const record = state.anomalies.list[state.anomalies.list.length - 1];
    if (record?.kind === 'lost-table' && record.firstCluster === t.cluster) record.lostTable = lostTableInfo(t, cs);
  }
  for (const a of state.anomalies.list) if (a.kind === 'leaked-cluster') rewordLeak(a, atRisk);
}

/**
 * Pointer tables that are not L1 or L2 tables: the stale tables of bitmaps QEMU ignores, and tables
 * without a single COPIED flag whose first targets all read as refcount blocks (a lost refcount table).
 */
async function withoutOtherTables(state: CheckState, evidence: TableEvidence[]): Promise<TableEvidence[]> {
  const cs = state.clusterSize;
  const stale = new Set<number>();
  if (state.image.header.bitmaps && !bitmapsActive(state.image)) {
    try {
      for (const bm of (await loadBitmapDirectory(state.image)).bitmaps) stale.add(Math.floor(bm.tableOffset / cs));
    } catch (e) {
      if (!(e instanceof BitmapError)) throw e;
    }
  }
  const ctx = {
    clusterSize: cs,
    fileSize: state.fileSize,
    targetLimit: state.fileSize,
    refcountOrder: state.image.geo.refcountOrder,
    extendedL2: state.extendedL2,
  };
  const kept: TableEvidence[] = [];
  for (const e of evidence) {
    if (stale.has(e.cluster)) continue;
    if (e.shape === 'pointer-table' && e.copied === 0 && e.targets.length > 0) {
      const sample = [...e.targets.subarray(0, 4)].map((k) => k * cs);
      const blocks = await readRanges(state.image.io, state.fileSize, sample, cs, state.zeros);
      if (sample.every((off) => looksLikeRefcountBlock(blocks.get(off)!, 0, ctx))) continue;
    }
    kept.push(e);
  }
  return kept;
}

/**
 * L2 tables only a snapshot still refers to, at an L1 slot the active table has empty, whose refcount
 * still counts the active tree's share (QEMU calls that a leak): the active disk lost them.
 */
async function snapshotHeldTables(state: CheckState): Promise<TableEvidence[]> {
  const cs = state.clusterSize;
  const l1 = state.image.l1;
  const span = state.image.geo.l2Entries * cs;
  const activeEmpty = (i: number): boolean =>
    i < l1.length / 8 && i * span < state.image.virtualSize && u32(l1, 8 * i) === 0 && u32(l1, 8 * i + 4) === 0;
  const ctx = {
    clusterSize: cs,
    fileSize: state.fileSize,
    extendedL2: state.extendedL2,
    refcountOrder: state.image.geo.refcountOrder,
  };
  const out: TableEvidence[] = [];
  const seen = new Set<number>();
  for (const s of state.snapshots) {
    if (!s.l1Size || s.l1TableOffset % cs !== 0 || s.l1TableOffset >= state.fileSize) continue;
    const slots = Math.min(s.l1Size, l1.length / 8);
    const table = await readPadded(state.image.io, s.l1TableOffset, slots * 8);
    for (let i = 0; i < slots; i++) {
      const off = l1Offset(u32(table, 8 * i), u32(table, 8 * i + 4));
      if (!off || off % cs !== 0 || off >= state.fileSize || !activeEmpty(i)) continue;
      const k = off / cs;
      if (seen.has(k) || state.metaRoles.get(k) !== HostRole.SnapshotL2) continue;
      seen.add(k);
      if ((await state.lookup.get(k)) <= state.refAt(k)) continue;
      const e = examineCluster(await readPadded(state.image.io, off, cs), k, ctx);
      if (e?.shape !== 'pointer-table') continue;
      e.snapshotSlot = i;
      out.push(e);
    }
  }
  return out;
}

function liveRole(role: number | undefined): 'l2' | 'l1' | 'metadata' | undefined {
  if (role === undefined) return undefined;
  if (role === HostRole.L2 || role === HostRole.SnapshotL2) return 'l2';
  if (role === HostRole.L1 || role === HostRole.SnapshotL1) return 'l1';
  return 'metadata';
}

function lostTableInfo(t: LostTable, clusterSize: number): NonNullable<Anomaly['lostTable']> {
  const info: NonNullable<Anomaly['lostTable']> = {
    table: t.kind,
    dataClusters: t.dataClusters,
    unreferencedDataClusters: t.unreferencedDataClusters,
    bytesAtRisk: t.unreferencedDataClusters * clusterSize,
    compressedEntries: t.compressedEntries,
    dataRanges: t.dataRanges,
  };
  if (t.l2Tables !== undefined) info.l2Tables = t.l2Tables;
  if (t.l1Index !== undefined) {
    info.l1Index = t.l1Index;
    info.guestStart = t.guestStart!;
    info.guestLength = t.guestLength!;
    info.placedBy = t.placedBy!;
  }
  if (t.viaL1 !== undefined) info.viaL1 = t.viaL1;
  return info;
}

/** A leak run over a lost table or the data it maps is not "only wasted space". */
function rewordLeak(a: Anomaly, atRisk: Uint8Array): void {
  if (a.firstCluster === undefined) return;
  let hit = 0;
  for (let k = a.firstCluster; k < a.firstCluster + a.count && k < atRisk.length; k++) hit += atRisk[k]!;
  if (!hit) return;
  const all = hit === a.count;
  a.explanation = `Nothing refers to ${all ? 'these clusters' : `${hit} of these ${a.count} clusters`} any more, but they belong to a lost table or hold the data one still maps: the data is at risk.`;
  a.fix =
    'Do not repair leaks with `qemu-img check -r leaks`: it would free this data (`qcow2-doctor check -r leaks` keeps it). Run `qcow2-doctor check -r all` (it re-links lost tables where their place is certain) or `qcow2-doctor salvage`.';
}

/**
 * Read the unreferenced clusters inside the file in order and keep what their content says. Clusters
 * mapped by a table already found are data and are not read; the rest is read within a byte budget.
 */
async function examineUnreferenced(state: CheckState): Promise<{ evidence: TableEvidence[]; nonZero: number[] }> {
  const nonZero: number[] = []; // read, neither zeros nor a table: data (orphaned, when leaked)
  if (!state.imrt || state.fileClusters < 2) return { evidence: [], nonZero };
  const cs = state.clusterSize;
  const ctx = {
    clusterSize: cs,
    fileSize: state.fileSize,
    extendedL2: state.extendedL2,
    refcountOrder: state.image.geo.refcountOrder,
    snapshots: state.snapshots.length,
  };
  const known = new Uint8Array(state.fileClusters); // targets of tables found: data, not read
  const evidence: TableEvidence[] = [];
  let budget = state.counters.leaks > 0 ? BUDGET_WITH_LEAKS : BUDGET_WITHOUT_LEAKS;
  const maxBatch = Math.max(1, Math.floor(BATCH_BYTES / cs));
  // Batches grow while nothing is found; after a table, one cluster at a time (its data usually follows it).
  let perBatch = 1;
  const cursor = { next: 1 };
  while (budget > 0) {
    const batch = nextUnreferenced(state, cursor, perBatch, known);
    if (!batch.length) break;
    state.checkCancel();
    const offsets = batch.map((k) => k * cs);
    const contents = await readRanges(state.image.io, state.fileSize, offsets, cs, state.zeros);
    let foundHere = false;
    for (const k of batch) {
      if (known[k]) continue; // a table of this batch maps it: data
      const content = contents.get(k * cs)!;
      const found = examineCluster(content, k, ctx);
      if (!found) {
        if (holdsData(content, ctx)) nonZero.push(k);
        budget -= cs;
        continue;
      }
      foundHere = true;
      evidence.push(found);
      for (const t of found.targets) if (t < known.length) known[t] = 1;
    }
    perBatch = foundHere ? 1 : Math.min(maxBatch, perBatch * 2);
  }
  return { evidence, nonZero };
}

/** Up to `max` unreferenced clusters from cursor.next on, skipping known data (and, fast, everything counted). */
function nextUnreferenced(state: CheckState, cursor: { next: number }, max: number, known: Uint8Array): number[] {
  const out: number[] = [];
  const end = state.fileClusters;
  let k = cursor.next;
  while (out.length < max) {
    k = state.imrt.nextUncounted(k, end);
    if (k >= end) break;
    if (known[k] === 0) out.push(k);
    k++;
  }
  cursor.next = k;
  return out;
}
