// Reconstruction: from the scan's findings and whatever header survives, decide which tables are
// L1, L2 and refcount tables, which L1 is the active one, which snapshots exist, and where each L2
// table sits in each guest disk. Every decision that is not read from surviving metadata is
// recorded as a guess with a confidence.
import * as C from '../format/constants.js';
import { u16, u32 } from '../format/bytes.js';
import { decodeSnapshotEntry, snapshotEntryLength } from '../format/snapshot.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import type { HeaderHints } from './geometry-guess.js';
import type { ScanFindings } from './scan.js';
import type { PointerTableSummary } from '../format/cluster-content.js';
import { isZero } from '../format/cluster-content.js';
import { findGptHeaders, type GptClue } from './guest-clues.js';
import { ClusterCache, l1EntryPlausible, l1Target, RefcountProbe, standardTarget } from './table-reader.js';
import type { GuestView, L2Placement, LostL2, Reconstruction } from './types.js';

export interface ReconstructOptions {
  clusterBitsSource: 'header' | 'inferred' | 'user';
  /** The user knows the disk size. */
  virtualSize?: number;
  /** Place unreferenced L2 tables even when the active L1 looks intact (lost entries that read as 0). */
  placeOrphans?: boolean;
}

type Role = 'l1' | 'l2' | 'reftable';

interface SnapshotInfo {
  id: string;
  name: string;
  l1Offset: number;
  l1Size: number;
  diskSize?: number;
  date: number;
  order: number;
}

const MIB = 1024 * 1024;

export async function reconstruct(
  io: PositionalIO,
  hints: HeaderHints,
  findings: ScanFindings,
  opts: ReconstructOptions,
): Promise<Reconstruction> {
  const cb = findings.geometry.clusterBits;
  const cs = 2 ** cb;
  const extendedL2 = findings.geometry.extendedL2;
  const l2Entries = cs / (extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD);
  const coverage = cs * l2Entries;
  const fileSize = findings.fileSize;
  const limit = Math.max(fileSize * 4, fileSize + 2 ** 30);
  const cache = new ClusterCache(io, cs);
  const guesses: string[] = [];
  const warnings: string[] = [];
  const tables = new Map<number, PointerTableSummary>(findings.tables.map((t) => [t.offset, t]));
  const refblocks = new Set(findings.refcountBlocks);

  // 1. Roles of the pointer tables, by what they point to.
  const role = new Map<number, Role>();
  // Tables that surviving metadata names keep the role it gives them, whatever they point to
  // (an L1 whose L2 tables were all destroyed points only at garbage).
  const named = new Map<number, Role>();
  if (hints.intact && hints.l1Offset !== undefined && hints.l1Size !== undefined)
    for (let o = hints.l1Offset; o < hints.l1Offset + hints.l1Size * 8; o += cs) named.set(o - (o % cs), 'l1');
  if (hints.intact && hints.refcountTableOffset !== undefined)
    for (let k = 0; k < (hints.refcountTableClusters ?? 1); k++)
      named.set(hints.refcountTableOffset + k * cs, 'reftable');
  for (const t of findings.tables) role.set(t.offset, named.get(t.offset) ?? (await tableRole(t)));
  const l2Set = (o: number): boolean => role.get(o) === 'l2';

  // 2. Refcounts, when the structure survives: used only to tell live tables from stale copies.
  const probe = await refcountProbe();

  // 3. Snapshots.
  const snaps = await findSnapshots();

  // 4. Active L1.
  const snapL1s = new Set(snaps.list.map((s) => s.l1Offset));
  for (const o of snapL1s) if (role.has(o)) role.set(o, 'l1');
  const active = await findActiveL1();

  // 5. Views from L1 tables.
  const views: GuestView[] = [];
  const activeView: GuestView = {
    kind: 'active',
    id: 'active',
    name: 'active disk',
    virtualSize: 0,
    l1Source: active ? (active.source === 'header' ? 'header' : 'scan') : 'none',
    l1Offset: active?.offset,
    l2: new Map(),
    lostL2: [],
  };
  let activeState: 'valid' | 'damaged' | 'lost' = 'lost';
  if (active) {
    const r = await readL1(active.offset, active.size);
    activeState = r.state;
    // Found by scanning with nothing at index 0: the table may start earlier (all-zero clusters
    // before it), which would shift every guest offset. Say so, and do not claim certainty.
    const shiftable = active.source === 'scan' && !r.placed.some((q) => q.l1Index === 0) && r.placed.length > 0;
    if (shiftable) {
      warnings.push(
        `the L1 table found at 0x${active.offset.toString(16)} maps nothing at guest offset 0: if it starts earlier in the file, every guest offset is shifted (check the output, or pass --virtual-size and compare)`,
      );
      for (const q of r.placed) q.confidence = 0.8;
    }
    for (const p of r.placed) activeView.l2.set(p.l1Index, p);
    if (r.state !== 'lost') activeView.lostL2.push(...r.lost);
    else if (active.source === 'header')
      warnings.push(
        `active L1 table at 0x${active.offset.toString(16)} is unreadable (zeroed or overwritten): its L2 tables were placed from other evidence`,
      );
  }
  const snapViews: Array<{ info: SnapshotInfo; view: GuestView }> = [];
  for (const s of snaps.list) {
    const r = await readL1(s.l1Offset, s.l1Size);
    const v: GuestView = {
      kind: 'snapshot',
      id: s.id,
      name: s.name,
      virtualSize: s.diskSize ?? 0,
      l1Source: 'snapshot-table',
      l1Offset: s.l1Offset,
      l2: new Map(r.placed.map((p) => [p.l1Index, p])),
      lostL2: r.state === 'lost' ? [] : r.lost,
    };
    if (r.state === 'lost') warnings.push(`L1 table of snapshot ${s.id} at 0x${s.l1Offset.toString(16)} is unreadable`);
    snapViews.push({ info: s, view: v });
  }

  // 5b. Snapshot table lost or short: L1-like tables nobody claims are offered as unnamed disks.
  const tableShort = !snaps.table
    ? !hints.intact || (hints.nbSnapshots ?? 0) > 0
    : snaps.list.length < (hints.nbSnapshots ?? 0);
  if (tableShort) {
    for (const o of [...role.keys()].filter((x) => role.get(x) === 'l1').sort((a, b) => a - b)) {
      if (o === active?.offset || snapL1s.has(o)) continue;
      if (active && o > active.offset && o < active.offset + active.size * 8) continue; // part of the active L1
      const r = await readL1(o, cs / 8);
      if (!r.placed.length) continue;
      const id = `l1@0x${o.toString(16)}`;
      snapViews.push({
        info: { id, name: 'unnamed (snapshot table lost)', l1Offset: o, l1Size: cs / 8, date: 0, order: -1 },
        view: {
          kind: 'snapshot',
          id,
          name: 'unnamed (snapshot table lost)',
          virtualSize: 0,
          l1Source: 'scan',
          l1Offset: o,
          l2: new Map(r.placed.map((p) => [p.l1Index, p])),
          lostL2: [],
        },
      });
      guesses.push(
        `L1-like table at 0x${o.toString(16)} claimed by no surviving snapshot entry: offered as disk '${id}' (a snapshot whose table entry is lost, or a stale copy)`,
      );
    }
  }

  // 6. Orphan L2 tables: L2-like, referenced by no L1 that we know of.
  const referenced = new Set<number>();
  for (const v of [activeView, ...snapViews.map((x) => x.view)]) for (const p of v.l2.values()) referenced.add(p.host);
  for (const o of role.keys()) {
    if (role.get(o) !== 'l1') continue;
    const buf = await readPadded(io, o, cs);
    for (let p = 0; p < cs; p += 8) {
      const t = l1Target(buf, p);
      if (t && l2Set(t)) referenced.add(t);
    }
  }
  let orphans = [...role.entries()]
    .filter(([o, r]) => r === 'l2' && !referenced.has(o))
    .map(([o]) => o)
    .sort((a, b) => a - b);
  orphans = await dropDataLookalikes(orphans, [activeView, ...snapViews.map((x) => x.view)]);
  const unused: number[] = [];
  const placeable: number[] = [];
  // With an intact active L1, a zero entry means unallocated: an unreferenced table is a leak (an
  // interrupted allocation) or a stale copy, and placing it would show data the guest never saw.
  const l1Trusted = !!active && activeState === 'valid' && !opts.placeOrphans;
  for (const o of orphans) {
    const rc = probe ? await probe.refcount(o / cs) : undefined;
    if (rc === 0 || l1Trusted) unused.push(o);
    else placeable.push(o);
  }
  if (unused.length)
    guesses.push(
      `${unused.length} L2-like table(s) referenced by no L1 were left out (${l1Trusted ? 'the active L1 is intact: leaked or stale; --place-orphans uses them' : 'refcount 0: stale copies'}): ${unused.slice(0, 8).map(hx).join(', ')}${unused.length > 8 ? ', …' : ''}`,
    );

  // 7. Virtual size (needed to bound the L1 index range).
  let virtualSize = opts.virtualSize ?? 0;
  let virtualSizeSource: Reconstruction['virtualSizeSource'] = 'user';
  if (!virtualSize && hints.size) {
    virtualSize = hints.size;
    virtualSizeSource = hints.intact ? 'header' : 'header-damaged';
  }
  if (!virtualSize) {
    const ds = Math.max(0, ...snaps.list.map((s) => s.diskSize ?? 0));
    if (ds) {
      virtualSize = ds;
      virtualSizeSource = 'snapshot-table';
    }
  }

  // 7b. GPT headers in the active disk's data: they place their tables and give the disk size.
  const gpt = new Map<number, Array<{ j: number; clue: GptClue }>>();
  for (const h of new Set([...placeable, ...[...activeView.l2.values()].map((q) => q.host)])) {
    const found = await gptIn(h);
    if (found.length) gpt.set(h, found);
  }
  if (!virtualSize) {
    let last = 0;
    for (const list of gpt.values()) for (const { clue } of list) last = Math.max(last, clue.myLba, clue.alternateLba);
    if (last > 0) {
      virtualSize = (last + 1) * 512;
      virtualSizeSource = 'guest-gpt';
      guesses.push(`virtual size ${virtualSize} bytes from the guest's GPT header (last LBA ${last})`);
    }
  }

  // 8. Place orphans in the active disk.
  const l1Slots = virtualSize
    ? Math.ceil(virtualSize / coverage)
    : Math.max(placeable.length + maxIndex(activeView) + 1, 1);
  await placeOrphans(placeable, l1Slots);

  if (!virtualSize) {
    virtualSizeSource = 'guessed';
    let end = 0;
    for (const v of [activeView, ...snapViews.map((x) => x.view)]) end = Math.max(end, await mappedEnd(v));
    virtualSize = Math.max(MIB, Math.ceil(end / MIB) * MIB);
    guesses.push(
      `virtual size unknown (header lost): ${virtualSize} bytes, the end of the last mapped cluster rounded up to a MiB (use --virtual-size to override)`,
    );
  }
  activeView.virtualSize = virtualSize;
  for (const sv of snapViews) if (!sv.view.virtualSize) sv.view.virtualSize = virtualSize;
  views.push(activeView, ...snapViews.map((x) => x.view));
  for (const v of views) {
    const needed = Math.ceil(v.virtualSize / coverage);
    for (const i of [...v.l2.keys()]) if (i >= needed) v.l2.delete(i); // VM state area, not disk
    v.lostL2 = v.lostL2.filter((l) => l.l1Index < needed);
  }

  const l1Tables = [...role.entries()]
    .filter(([, r]) => r === 'l1')
    .map(([o]) => o)
    .sort((a, b) => a - b);
  return {
    clusterBits: cb,
    clusterSize: cs,
    clusterSizeSource: opts.clusterBitsSource,
    extendedL2,
    compressionType: hints.intact ? hints.compressionType : undefined,
    virtualSize,
    virtualSizeSource,
    backingFile: hints.backingFile,
    backingFormat: hints.backingFormat,
    views,
    structures: {
      header: hints.intact ? 'intact' : hints.magicOk || hints.version ? 'damaged' : 'missing',
      headerDamage: hints.damage,
      activeL1: active ? { offset: active.offset, source: active.source, state: activeState } : undefined,
      snapshotTable: snaps.table,
      l1Tables,
      l2Tables: [...role.values()].filter((r) => r === 'l2').length,
      refcountTables: [...role.entries()].filter(([, r]) => r === 'reftable').map(([o]) => o),
      refcountBlocks: refblocks.size,
      unusedL2Tables: unused,
    },
    guesses,
    warnings,
  };

  // ---- helpers (closures over the state above) ----

  async function tableRole(t: PointerTableSummary): Promise<Role> {
    if (t.extended) return 'l2';
    if (t.compressed > 0 || t.zeroFlag > 0) return 'l2';
    const buf = await cache.get(t.offset);
    let total = 0,
      inTables = 0,
      inRb = 0;
    const others: number[] = [];
    for (let p = 0; p < cs; p += 8) {
      const x = standardTarget(buf, p);
      if (!x) continue;
      total++;
      if (tables.has(x)) inTables++;
      else if (refblocks.has(x)) inRb++;
      else others.push(x);
    }
    if (inRb * 2 >= total && t.copied === 0) return 'reftable';
    if (inTables * 2 > total) return 'l1';
    // An L1 whose L2 tables are empty (all entries zero) points at zero clusters.
    if (inTables > 0 && others.length <= 64) {
      let zeros = 0;
      for (const x of others) if (x < fileSize && isZero(await cache.get(x), 0, cs)) zeros++;
      if ((inTables + zeros) * 2 > total) return 'l1';
    }
    return 'l2';
  }

  async function refcountProbe(): Promise<RefcountProbe | undefined> {
    const order = hints.refcountOrder ?? 4;
    const candidates: Array<{ off: number; clusters: number }> = [];
    if (hints.refcountTableOffset !== undefined)
      candidates.push({ off: hints.refcountTableOffset, clusters: hints.refcountTableClusters ?? 1 });
    for (const [o, r] of role) if (r === 'reftable') candidates.push({ off: o, clusters: 1 });
    for (const c of candidates) {
      if (c.off >= fileSize) continue;
      const rt = await readPadded(io, c.off, Math.min(c.clusters * cs, C.QCOW_MAX_REFTABLE_SIZE));
      const p = new RefcountProbe(io, rt, cs, order, fileSize, (o) => refblocks.has(o));
      // Trust it only if it describes itself.
      const self = await p.refcount(c.off / cs);
      if (self !== undefined && self >= 1) return p;
    }
    return undefined;
  }

  async function findSnapshots(): Promise<{
    list: SnapshotInfo[];
    table?: Reconstruction['structures']['snapshotTable'];
  }> {
    if (hints.snapshotsOffset !== undefined && hints.nbSnapshots) {
      const list = await decodeSnapshotTable(hints.snapshotsOffset, hints.nbSnapshots);
      if (list.length) {
        if (list.length < hints.nbSnapshots)
          warnings.push(`snapshot table: only ${list.length} of ${hints.nbSnapshots} entries readable`);
        return { list, table: { offset: hints.snapshotsOffset, source: 'header', entries: list.length } };
      }
      warnings.push(
        `snapshot table at 0x${hints.snapshotsOffset.toString(16)} is unreadable; looking for another copy`,
      );
    } else if (hints.intact) {
      return { list: [] }; // an intact header says there are no snapshots
    }
    // Header gone or table damaged: the scan's candidates. QEMU leaves old copies behind when it
    // rewrites the table, so prefer a live one, then the one with the most entries, then the newest.
    let best: { off: number; list: SnapshotInfo[]; live: boolean } | undefined;
    for (const off of findings.snapshotTables) {
      const list = await decodeSnapshotTable(off, C.QCOW_MAX_SNAPSHOTS);
      if (!list.length) continue;
      const rc = probe ? await probe.refcount(off / cs) : undefined;
      const live = rc !== undefined && rc > 0;
      if (!best || (live && !best.live) || (live === best.live && list.length >= best.list.length))
        best = { off, list, live };
    }
    if (!best) return { list: [] };
    if (findings.snapshotTables.length > 1)
      guesses.push(
        `snapshot table chosen among ${findings.snapshotTables.length} candidates: 0x${best.off.toString(16)}`,
      );
    return { list: best.list, table: { offset: best.off, source: 'scan', entries: best.list.length } };
  }

  async function decodeSnapshotTable(offset: number, max: number): Promise<SnapshotInfo[]> {
    const list: SnapshotInfo[] = [];
    let pos = offset;
    for (let i = 0; i < max && pos + C.SNAPSHOT_ENTRY_FIXED_SIZE <= fileSize; i++) {
      const fixed = await readPadded(io, pos, C.SNAPSHOT_ENTRY_FIXED_SIZE);
      const l1Offset = u32(fixed, 0) * 0x1_0000_0000 + u32(fixed, 4);
      const l1Size = u32(fixed, 8);
      const idLen = u16(fixed, 12);
      const extra = u32(fixed, 36);
      if (
        l1Offset === 0 ||
        l1Offset % cs !== 0 ||
        l1Offset >= fileSize ||
        l1Size === 0 ||
        l1Size > C.QCOW_MAX_L1_SIZE / 8 ||
        idLen === 0 ||
        extra > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA
      )
        break;
      const len = snapshotEntryLength(fixed, 0);
      const e = decodeSnapshotEntry(await readPadded(io, pos, len), 0, pos - offset);
      if (!/^[\x20-\x7e]+$/.test(e.id)) break;
      list.push({
        id: e.id,
        name: e.name,
        l1Offset,
        l1Size,
        diskSize: e.diskSize,
        date: e.dateSec + e.dateNsec / 1e9,
        order: i,
      });
      pos += len;
    }
    return list;
  }

  async function findActiveL1(): Promise<{ offset: number; size: number; source: 'header' | 'scan' } | undefined> {
    if (hints.l1Offset !== undefined && hints.l1Size !== undefined && hints.l1Offset < fileSize)
      return { offset: hints.l1Offset, size: hints.l1Size, source: 'header' };
    // Header lost: L1-like tables that no snapshot claims; contiguous clusters form one table.
    const starts = [...role.entries()]
      .filter(([o, r]) => r === 'l1' && !snapL1s.has(o))
      .map(([o]) => o)
      .sort((a, b) => a - b);
    const runs: Array<{ offset: number; clusters: number }> = [];
    for (const o of starts) {
      const last = runs[runs.length - 1];
      const end = last ? last.offset + last.clusters * cs : -1;
      // A sparse L1 spanning several clusters has all-zero clusters between its used ones.
      if (last && o >= end && o - end <= 64 * cs && (await allZero(end, o))) last.clusters = (o - last.offset) / cs + 1;
      else runs.push({ offset: o, clusters: 1 });
    }
    if (!runs.length) return undefined;
    // The active L1 is the one owning the most L2 tables of its own (snapshots share the rest).
    const snapL2 = new Set<number>();
    for (const s of snaps.list) {
      const buf = await readInFile(s.l1Offset, s.l1Size * 8);
      for (let p = 0; p < buf.length; p += 8) snapL2.add(l1Target(buf, p));
    }
    let best: { run: { offset: number; clusters: number }; own: number; total: number; live: boolean } | undefined;
    for (const run of runs) {
      const buf = await readPadded(io, run.offset, run.clusters * cs);
      let own = 0,
        total = 0;
      for (let p = 0; p < buf.length; p += 8) {
        const t = l1Target(buf, p);
        if (!t || !l2Set(t)) continue;
        total++;
        if (!snapL2.has(t)) own++;
      }
      const rc = probe ? await probe.refcount(run.offset / cs) : undefined;
      const live = rc !== undefined && rc > 0;
      const better =
        !best ||
        (live && !best.live) ||
        (live === best.live && (own > best.own || (own === best.own && total > best.total)));
      if (better) best = { run, own, total, live };
    }
    if (!best) return undefined;
    if (runs.length > 1)
      guesses.push(
        `active L1 table chosen among ${runs.length} L1-like tables: 0x${best.run.offset.toString(16)} (owns ${best.own} L2 table(s) no snapshot uses)`,
      );
    else guesses.push(`active L1 table found by scanning at 0x${best.run.offset.toString(16)}`);
    return { offset: best.run.offset, size: best.run.clusters * (cs / 8), source: 'scan' };
  }

  async function readL1(
    offset: number,
    size: number,
  ): Promise<{ placed: L2Placement[]; lost: LostL2[]; state: 'valid' | 'damaged' | 'lost' }> {
    const bytes = Math.min(size, C.QCOW_MAX_L1_SIZE / 8) * 8;
    const buf = await readInFile(offset, bytes);
    const placed: L2Placement[] = [];
    const lost: LostL2[] = [];
    let bad = 0,
      nonZero = 0;
    for (let i = 0; i * 8 < buf.length; i++) {
      const p = i * 8;
      if (u32(buf, p) === 0 && u32(buf, p + 4) === 0) continue;
      nonZero++;
      if (!l1EntryPlausible(buf, p, cs, limit)) {
        bad++;
        lost.push({ l1Index: i, host: 0, reason: 'L1 entry unreadable' });
        continue;
      }
      const t = l1Target(buf, p);
      if (t === 0) continue;
      if (l2Set(t)) placed.push({ l1Index: i, host: t, source: 'l1', confidence: 1 });
      else if (t >= fileSize) lost.push({ l1Index: i, host: t, reason: 'L2 table beyond end of file (truncated)' });
      else
        lost.push({
          l1Index: i,
          host: t,
          reason: `L2 table at 0x${t.toString(16)} destroyed (cluster no longer holds a table)`,
        });
    }
    // All zero, or mostly unreadable: nothing in it can be trusted to say "unallocated".
    const state = nonZero === 0 || bad * 2 > nonZero ? 'lost' : bad > 0 || lost.length > 0 ? 'damaged' : 'valid';
    return { placed, lost, state };
  }

  /** Orphans that some placed L2 table maps as guest data are data, not tables. */
  async function dropDataLookalikes(cands: number[], vs: GuestView[]): Promise<number[]> {
    if (!cands.length) return cands;
    const set = new Set(cands);
    const seen = new Set<number>();
    const step = extendedL2 ? 16 : 8;
    for (const v of vs)
      for (const p of v.l2.values()) {
        if (seen.has(p.host)) continue;
        seen.add(p.host);
        const buf = await cache.get(p.host);
        for (let q = 0; q < cs; q += step) {
          const t = standardTarget(buf, q);
          if (t && set.has(t)) set.delete(t);
        }
      }
    const dropped = cands.length - set.size;
    if (dropped) guesses.push(`${dropped} table-like cluster(s) are guest data of mapped L2 tables; treated as data`);
    return cands.filter((c) => set.has(c));
  }

  async function placeOrphans(list: number[], slots: number): Promise<void> {
    if (!list.length) return;
    const taken = (i: number): boolean =>
      activeView.l2.has(i) || activeView.lostL2.some((l) => l.l1Index === i && l.host !== 0);
    const remaining = new Set(list);
    const step = extendedL2 ? 16 : 8;
    // a) Data shared with a snapshot's L2 at the same L2 index: same L1 index (a COW copy).
    if (snapViews.length) {
      const sample = new Map<number, Array<{ o: number; j: number }>>();
      for (const o of list) {
        const buf = await cache.get(o);
        let n = 0;
        for (let j = 0; j < l2Entries && n < 32; j++) {
          const t = standardTarget(buf, j * step);
          if (!t) continue;
          n++;
          const arr = sample.get(t) ?? [];
          arr.push({ o, j });
          sample.set(t, arr);
        }
      }
      const votes = new Map<number, Map<number, number>>();
      const seen = new Set<string>();
      for (const sv of snapViews)
        for (const p of sv.view.l2.values()) {
          const key = `${p.host}:${p.l1Index}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const buf = await cache.get(p.host);
          for (let j = 0; j < l2Entries; j++) {
            const t = standardTarget(buf, j * step);
            const hits = t ? sample.get(t) : undefined;
            if (!hits) continue;
            for (const h of hits) {
              if (h.j !== j) continue;
              const m = votes.get(h.o) ?? new Map<number, number>();
              m.set(p.l1Index, (m.get(p.l1Index) ?? 0) + 1);
              votes.set(h.o, m);
            }
          }
        }
      const claims: Array<{ o: number; i: number; n: number }> = [];
      for (const [o, m] of votes) {
        let bi = -1,
          bn = 0;
        for (const [i, n] of m)
          if (n > bn) {
            bi = i;
            bn = n;
          }
        if (bi >= 0) claims.push({ o, i: bi, n: bn });
      }
      claims.sort((a, b) => b.n - a.n || b.o - a.o); // more shared data first; then the newer copy
      for (const c of claims) {
        if (taken(c.i) || c.i >= slots) continue;
        activeView.l2.set(c.i, { l1Index: c.i, host: c.o, source: 'snapshot-match', confidence: 0.95 });
        remaining.delete(c.o);
      }
      const matched = list.length - remaining.size;
      if (matched)
        guesses.push(
          `${matched} L2 table(s) of the active disk placed by the data they share with a snapshot's L2 table at the same index`,
        );
    }
    // a2) A GPT header in a table's data states its own LBA: that fixes the table's L1 index.
    let anchored = 0;
    for (const o of [...remaining]) {
      for (const { j, clue } of gpt.get(o) ?? []) {
        const guestOff = clue.myLba * 512;
        if (guestOff % cs !== clue.at) continue;
        const g = Math.floor(guestOff / cs) - j;
        if (g < 0 || g % l2Entries !== 0) continue;
        const i = g / l2Entries;
        if (i >= slots || taken(i)) continue;
        activeView.l2.set(i, { l1Index: i, host: o, source: 'guest-gpt', confidence: 0.95 });
        remaining.delete(o);
        anchored++;
        break;
      }
    }
    if (anchored) guesses.push(`${anchored} L2 table(s) placed by a GPT header in their data (it records its own LBA)`);
    activeView.lostL2 = activeView.lostL2.filter((l) => !activeView.l2.has(l.l1Index));
    // b) The rest in host order (QEMU allocates L2 tables as the guest first touches each range).
    const rest = [...remaining].sort((a, b) => a - b);
    const snapCovered = (i: number): boolean => snapViews.some((sv) => sv.view.l2.has(i));
    // Slots whose L1 entry is unreadable held a table: fill those first.
    const damaged = activeView.lostL2
      .filter((l) => l.host === 0 && l.l1Index < slots)
      .map((l) => l.l1Index)
      .sort((a, b) => a - b);
    let free: number[] = [];
    if (damaged.length >= rest.length) free = damaged;
    else {
      for (let i = 0; i < slots; i++) if (!taken(i) && !snapCovered(i)) free.push(i);
      if (free.length < rest.length) {
        free = [];
        for (let i = 0; i < slots; i++) if (!taken(i)) free.push(i);
      }
    }
    if (rest.length) {
      const exact = free.length === rest.length;
      const conf = exact ? (rest.length === 1 ? 0.9 : 0.7) : 0.4;
      const n = Math.min(rest.length, free.length);
      if (exact) {
        for (let k = 0; k < n; k++)
          activeView.l2.set(free[k]!, { l1Index: free[k]!, host: rest[k]!, source: 'ordering', confidence: conf });
      } else {
        // Keep guest order = host order around the tables already placed: each orphan goes to the
        // first free slot after the slot of the table just before it in the file.
        const open = new Set(free);
        for (const h of rest.slice(0, n)) {
          let after = -1,
            hostBefore = -1;
          for (const q of activeView.l2.values())
            if (q.host < h && q.host > hostBefore) {
              hostBefore = q.host;
              after = q.l1Index;
            }
          const pick = free.find((i) => open.has(i) && i > after) ?? free.find((i) => open.has(i));
          if (pick === undefined) break;
          open.delete(pick);
          activeView.l2.set(pick, { l1Index: pick, host: h, source: 'ordering', confidence: conf });
        }
      }
      activeView.lostL2 = activeView.lostL2.filter((l) => !activeView.l2.has(l.l1Index));
      if (n)
        guesses.push(
          `${n} L2 table(s) with no surviving L1 entry placed in host order into ${free.length} free L1 slot(s) (confidence ${conf})`,
        );
      if (rest.length > n)
        warnings.push(
          `${rest.length - n} L2 table(s) referenced by no surviving L1 were not used (no free L1 slot in the active disk): they may belong to a lost snapshot`,
        );
    }
    // c) Slots still empty that a snapshot maps: the active disk still shares the newest snapshot's table.
    // Only where the active L1 says nothing readable: all of it when lost, else its unreadable entries.
    const unreadable = new Set(activeView.lostL2.filter((l) => l.host === 0).map((l) => l.l1Index));
    if ((activeState === 'lost' || unreadable.size) && snapViews.length) {
      const newest = [...snapViews].sort((a, b) => b.info.date - a.info.date || b.info.order - a.info.order);
      let inherited = 0;
      for (let i = 0; i < slots; i++) {
        if (activeView.l2.has(i) || (activeState !== 'lost' && !unreadable.has(i))) continue;
        const sv = newest.find((x) => x.view.l2.has(i));
        if (!sv) continue;
        const p = sv.view.l2.get(i)!;
        activeView.l2.set(i, { l1Index: i, host: p.host, source: 'inherited', confidence: 0.8 });
        inherited++;
      }
      activeView.lostL2 = activeView.lostL2.filter((l) => !activeView.l2.has(l.l1Index));
      if (inherited)
        guesses.push(`${inherited} L1 slot(s) of the active disk assumed unchanged since the newest snapshot`);
    }
  }

  /** GPT headers in the first two and the last mapped data clusters of an L2 table. */
  async function gptIn(l2Host: number): Promise<Array<{ j: number; clue: GptClue }>> {
    const step = extendedL2 ? 16 : 8;
    const buf = await cache.get(l2Host);
    let last = -1;
    for (let j = 0; j < l2Entries; j++) if (standardTarget(buf, j * step)) last = j;
    const out: Array<{ j: number; clue: GptClue }> = [];
    for (const j of new Set([0, 1, last])) {
      if (j < 0) continue;
      const t = standardTarget(buf, j * step);
      if (!t || t % cs !== 0 || t >= fileSize) continue;
      for (const clue of findGptHeaders(await readPadded(io, t, cs))) out.push({ j, clue });
    }
    return out;
  }

  /** Table bytes that exist in the file (entries past its end read as zero, and cost nothing). */
  async function readInFile(offset: number, length: number): Promise<Uint8Array> {
    if (offset >= fileSize) return new Uint8Array(0);
    return io.read(offset, Math.min(length, fileSize - offset));
  }

  async function allZero(from: number, to: number): Promise<boolean> {
    for (let o = from; o < to; o += cs) if (!isZero(await cache.get(o), 0, cs)) return false;
    return true;
  }

  function maxIndex(v: GuestView): number {
    let m = -1;
    for (const i of v.l2.keys()) m = Math.max(m, i);
    return m;
  }

  /** Guest byte just past the last mapped cluster of a view. */
  async function mappedEnd(v: GuestView): Promise<number> {
    const i = maxIndex(v);
    if (i < 0) return 0;
    const buf = await cache.get(v.l2.get(i)!.host);
    const step = extendedL2 ? 16 : 8;
    let last = 0;
    for (let j = 0; j < l2Entries; j++) if (u32(buf, j * step) !== 0 || u32(buf, j * step + 4) !== 0) last = j + 1;
    return i * coverage + last * cs;
  }
}

function hx(n: number): string {
  return `0x${n.toString(16)}`;
}
