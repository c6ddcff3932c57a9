// Reconstruction: from the scan's findings and whatever header survives, decide which tables are
// L1, L2 and refcount tables, which L1 is the active one, which snapshots exist, and where each L2
// table sits in each guest disk. Every decision that is not read from surviving metadata or pinned
// by evidence is recorded as a guess with a confidence.
import { u32 } from '../format/bytes.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';
import type { HeaderHints } from './geometry-guess.js';
import { findActiveL1, L1_TRUNCATED, readL1, type ActiveL1 } from './l1-tables.js';
import { placeOrphans } from './orphan-placement.js';
import { adoptSnapshotHeldTables } from './reconstruct-snapshot-held.js';
import { doubtDuplicateMappings } from './duplicate-mappings.js';
import { dropCounterfeitL2 } from './counterfeit-l2.js';
import { markL1CopyTables } from './l1-copy-tables.js';
import { provenMetadata } from './metadata-clusters.js';
import { recoverSharedEntries } from './shared-entries.js';
import { markUnplacedTables } from './unplaced-tables.js';
import { markUnplacedData } from './unplaced-data.js';
import { gptDiskSize } from './placement-evidence.js';
import { hx, isL2, newState, type ReconstructState } from './reconstruct-state.js';
import type { ScanFindings } from './scan.js';
import { findSnapshots, type FoundSnapshots, type SnapshotInfo } from './snapshot-recovery.js';
import { assignRoles, findRefcountProbe } from './table-roles.js';
import { l1Target, standardTarget } from './table-reader.js';
import type { GuestView, Reconstruction } from './types.js';
import { appendLost } from './lost-index.js';
import { QCOW_MAX_L1_SIZE } from '../format/constants.js';

export interface ReconstructOptions {
  clusterBitsSource: 'header' | 'inferred' | 'user';
  /** The user knows the disk size. */
  virtualSize?: number;
  /** Place unreferenced L2 tables even when the active L1 looks intact (lost entries that read as 0). */
  placeOrphans?: boolean;
}

type SnapView = { info: SnapshotInfo; view: GuestView };

const MIB = 1024 * 1024;

export async function reconstruct(
  io: PositionalIO,
  hints: HeaderHints,
  findings: ScanFindings,
  opts: ReconstructOptions,
): Promise<Reconstruction> {
  const st = newState(io, hints, findings);
  const { cs, coverage } = st;
  await assignRoles(st);
  st.probe = await findRefcountProbe(st);
  const snaps = await findSnapshots(st);
  const snapL1s = new Set(snaps.list.map((s) => s.l1Offset));
  for (const o of snapL1s) if (st.role.has(o)) st.role.set(o, 'l1');
  const active = await findActiveL1(st, snaps.list, snapL1s);
  const { view: activeView, state: activeState } = await activeDisk(st, active);
  const snapViews = await snapshotDisks(st, snaps, active, snapL1s);
  if (active)
    await adoptSnapshotHeldTables(
      st,
      active,
      activeView,
      snapViews.map((x) => x.view),
    );
  const allViews = (): GuestView[] => [activeView, ...snapViews.map((x) => x.view)];

  const l1Trusted = !!active && activeState === 'valid' && !opts.placeOrphans;
  const placeable = await orphanTables(st, allViews(), l1Trusted);

  // The virtual size bounds the L1 index range.
  let { virtualSize, source: virtualSizeSource } = knownSize(st, snaps, opts);
  if (!virtualSize) {
    const g = await gptDiskSize(st, [...new Set([...placeable, ...[...activeView.l2.values()].map((q) => q.host)])]);
    if (g) {
      virtualSize = g;
      virtualSizeSource = 'guest-gpt';
      st.guesses.push(`virtual size ${virtualSize} bytes from the guest's GPT header (last LBA ${g / 512 - 1})`);
    }
  }
  // No qcow2 disk has more L1 slots than QEMU's largest L1 table holds: a hostile size (2^55 bytes in a
  // 5 KiB file) must not make every slot loop below walk billions of them.
  const l1Slots = Math.min(
    QCOW_MAX_L1_SIZE / 8,
    virtualSize ? Math.ceil(virtualSize / coverage) : Math.max(placeable.length + maxIndex(activeView) + 1, 1),
  );
  await placeOrphans(st, placeable, {
    active: activeView,
    activeState,
    snapViews,
    slots: l1Slots,
    virtualSize,
    sizeCertain: virtualSizeSource !== 'header-damaged' && virtualSize > 0,
  });
  if (!virtualSize) {
    virtualSizeSource = 'guessed';
    let end = 0;
    for (const v of allViews()) end = Math.max(end, await mappedEnd(st, v));
    virtualSize = Math.max(MIB, Math.ceil(end / MIB) * MIB);
    st.guesses.push(
      `virtual size unknown (header lost): ${virtualSize} bytes, the end of the last mapped cluster rounded up to a MiB (use --virtual-size to override)`,
    );
  }
  activeView.virtualSize = virtualSize;
  for (const sv of snapViews) if (!sv.view.virtualSize) sv.view.virtualSize = virtualSize;
  const views = allViews();
  for (const v of views) {
    const needed = Math.ceil(v.virtualSize / coverage);
    for (const i of [...v.l2.keys()]) if (i >= needed) v.l2.delete(i); // VM state area, not disk
    v.lostL2 = v.lostL2.filter((l) => l.l1Index < needed);
  }
  const metadata = await provenMetadata(st, views, snaps);
  await dropCounterfeitL2(st, views);
  await markL1CopyTables(st, views);
  await doubtDuplicateMappings(st, views, metadata);
  await markUnplacedTables(st, views, activeView);
  await markUnplacedData(st, views, metadata, !!hints.backingFile);
  await recoverSharedEntries(st, views, !!active && activeState !== 'lost');
  const roles = [...st.role.entries()];
  return {
    clusterBits: st.clusterBits,
    clusterSize: cs,
    clusterSizeSource: opts.clusterBitsSource,
    extendedL2: st.extendedL2,
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
      l1Tables: roles
        .filter(([, r]) => r === 'l1')
        .map(([o]) => o)
        .sort((a, b) => a - b),
      l2Tables: roles.filter(([, r]) => r === 'l2').length,
      refcountTables: roles.filter(([, r]) => r === 'reftable').map(([o]) => o),
      refcountBlocks: st.refblocks.size,
      unusedL2Tables: st.unusedL2,
    },
    guesses: st.guesses,
    warnings: st.warnings,
    metadata,
  };
}

/** The active disk's view from its L1 table, if one survives. */
async function activeDisk(
  st: ReconstructState,
  active: ActiveL1 | undefined,
): Promise<{ view: GuestView; state: 'valid' | 'damaged' | 'lost' }> {
  const view: GuestView = {
    kind: 'active',
    id: 'active',
    name: 'active disk',
    virtualSize: 0,
    l1Source: active ? (active.source === 'header' ? 'header' : 'scan') : 'none',
    l1Offset: active?.offset,
    l2: new Map(),
    lostL2: [],
  };
  if (!active) return { view, state: 'lost' };
  const r = await readL1(st, active.offset, active.size);
  // Found by scanning with nothing at index 0: the table may start earlier (all-zero clusters
  // before it), which would shift every guest offset. Say so, and do not claim certainty.
  const shiftable = active.source === 'scan' && !r.placed.some((q) => q.l1Index === 0) && r.placed.length > 0;
  if (shiftable) {
    st.warnings.push(
      `the L1 table found at ${hx(active.offset)} maps nothing at guest offset 0: if it starts earlier in the file, every guest offset is shifted (check the output, or pass --virtual-size and compare)`,
    );
    for (const q of r.placed) q.confidence = 0.8;
  }
  for (const p of r.placed) view.l2.set(p.l1Index, p);
  if (r.state !== 'lost') appendLost(view.lostL2, r.lost);
  // The file ends inside (or before) the L1: those slots are lost, whatever else placed elsewhere.
  else
    appendLost(
      view.lostL2,
      r.lost.filter((l) => l.reason === L1_TRUNCATED),
    );
  const cut = r.lost.filter((l) => l.reason === L1_TRUNCATED).length;
  if (cut)
    st.warnings.push(
      `the file ends ${active.offset >= st.fileSize ? 'before' : 'inside'} the active L1 table at ${hx(active.offset)} (truncated): the guest ranges of its ${cut} missing entr${cut === 1 ? 'y are' : 'ies are'} lost`,
    );
  else if (r.state === 'lost' && active.source === 'header')
    st.warnings.push(
      `active L1 table at ${hx(active.offset)} is unreadable (zeroed or overwritten): its L2 tables were placed from other evidence`,
    );
  return { view, state: r.state };
}

/** One view per snapshot; with the snapshot table lost or short, unclaimed L1-like tables too. */
async function snapshotDisks(
  st: ReconstructState,
  snaps: FoundSnapshots,
  active: ActiveL1 | undefined,
  snapL1s: Set<number>,
): Promise<SnapView[]> {
  const { hints, cs } = st;
  const out: SnapView[] = [];
  for (const s of snaps.list) {
    const r = await readL1(st, s.l1Offset, s.l1Size);
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
    if (r.state === 'lost') st.warnings.push(`L1 table of snapshot ${s.id} at ${hx(s.l1Offset)} is unreadable`);
    out.push({ info: s, view: v });
  }
  const tableShort = !snaps.table
    ? !hints.intact || (hints.nbSnapshots ?? 0) > 0
    : snaps.list.length < (hints.nbSnapshots ?? 0);
  if (!tableShort) return out;
  for (const o of [...st.role.keys()].filter((x) => st.role.get(x) === 'l1').sort((a, b) => a - b)) {
    if (o === active?.offset || snapL1s.has(o)) continue;
    if (active && o > active.offset && o < active.offset + active.size * 8) continue; // part of the active L1
    const r = await readL1(st, o, cs / 8);
    if (!r.placed.length) continue;
    const id = `l1@${hx(o)}`;
    const name = 'unnamed (snapshot table lost)';
    out.push({
      info: { id, name, l1Offset: o, l1Size: cs / 8, date: 0, order: -1 },
      view: {
        kind: 'snapshot',
        id,
        name,
        virtualSize: 0,
        l1Source: 'scan',
        l1Offset: o,
        l2: new Map(r.placed.map((p) => [p.l1Index, p])),
        lostL2: [],
      },
    });
    st.guesses.push(
      `L1-like table at ${hx(o)} claimed by no surviving snapshot entry: offered as disk '${id}' (a snapshot whose table entry is lost, or a stale copy)`,
    );
  }
  return out;
}

/** L2-like tables referenced by no L1 we know of that may be placed (not stale, not guest data). */
async function orphanTables(st: ReconstructState, views: GuestView[], l1Trusted: boolean): Promise<number[]> {
  const { cs } = st;
  const referenced = new Set<number>();
  for (const v of views) for (const p of v.l2.values()) referenced.add(p.host);
  for (const o of st.role.keys()) {
    if (st.role.get(o) !== 'l1') continue;
    const buf = await readPadded(st.io, o, cs);
    for (let p = 0; p < cs; p += 8) {
      const t = l1Target(buf, p);
      if (t && isL2(st, t)) referenced.add(t);
    }
  }
  let orphans = [...st.role.entries()]
    .filter(([o, r]) => r === 'l2' && !referenced.has(o))
    .map(([o]) => o)
    .sort((a, b) => a - b);
  orphans = await dropDataLookalikes(st, orphans, views);
  const placeable: number[] = [];
  // With an intact active L1, a zero entry means unallocated: an unreferenced table is a leak (an
  // interrupted allocation) or a stale copy, and placing it would show data the guest never saw.
  for (const o of orphans) {
    const rc = st.probe ? await st.probe.refcount(o / cs) : undefined;
    if (rc === 0 || l1Trusted) st.unusedL2.push(o);
    else placeable.push(o);
  }
  const unused = st.unusedL2;
  if (unused.length)
    st.guesses.push(
      `${unused.length} L2-like table(s) referenced by no L1 were left out (${l1Trusted ? 'the active L1 looks intact: leaked, stale, or placed by an L1 entry that was lost; --place-orphans uses them' : 'refcount 0: stale copies'}): ${unused.slice(0, 8).map(hx).join(', ')}${unused.length > 8 ? ', …' : ''}`,
    );
  return placeable;
}

/** Orphans that some placed L2 table maps as guest data are data, not tables. */
async function dropDataLookalikes(st: ReconstructState, cands: number[], vs: GuestView[]): Promise<number[]> {
  if (!cands.length) return cands;
  const set = new Set(cands);
  const seen = new Set<number>();
  for (const v of vs)
    for (const p of v.l2.values()) {
      if (seen.has(p.host)) continue;
      seen.add(p.host);
      const buf = await st.cache.get(p.host);
      for (let q = 0; q < st.cs; q += st.step) {
        const t = standardTarget(buf, q);
        if (t && set.has(t)) set.delete(t);
      }
    }
  const dropped = cands.length - set.size;
  if (dropped) st.guesses.push(`${dropped} table-like cluster(s) are guest data of mapped L2 tables; treated as data`);
  return cands.filter((c) => set.has(c));
}

function knownSize(
  st: ReconstructState,
  snaps: FoundSnapshots,
  opts: ReconstructOptions,
): { virtualSize: number; source: Reconstruction['virtualSizeSource'] } {
  if (opts.virtualSize) return { virtualSize: opts.virtualSize, source: 'user' };
  if (st.hints.size) return { virtualSize: st.hints.size, source: st.hints.intact ? 'header' : 'header-damaged' };
  const ds = Math.max(0, ...snaps.list.map((s) => s.diskSize ?? 0));
  return ds ? { virtualSize: ds, source: 'snapshot-table' } : { virtualSize: 0, source: 'user' };
}

function maxIndex(v: GuestView): number {
  let m = -1;
  for (const i of v.l2.keys()) m = Math.max(m, i);
  return m;
}

/** Guest byte just past the last mapped cluster of a view. */
async function mappedEnd(st: ReconstructState, v: GuestView): Promise<number> {
  const i = maxIndex(v);
  if (i < 0) return 0;
  const buf = await st.cache.get(v.l2.get(i)!.host);
  let last = 0;
  for (let j = 0; j < st.l2Entries; j++)
    if (u32(buf, j * st.step) !== 0 || u32(buf, j * st.step + 4) !== 0) last = j + 1;
  return i * st.coverage + last * st.cs;
}
