// L1 tables: which one is the active disk's when the header is gone, and what each entry says
// (an L2 table still there, one destroyed, an entry unreadable).
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { readPadded } from '../io/positional-io.js';
import { allZero, isL2, readInFile, type ReconstructState } from './reconstruct-state.js';
import type { SnapshotInfo } from './snapshot-recovery.js';
import { l1EntryPlausible, l1Target } from './table-reader.js';
import type { L2Placement, LostL2 } from './types.js';

export interface ActiveL1 {
  offset: number;
  size: number;
  source: 'header' | 'scan';
}

export async function findActiveL1(
  st: ReconstructState,
  snaps: SnapshotInfo[],
  snapL1s: Set<number>,
): Promise<ActiveL1 | undefined> {
  const { hints, fileSize } = st;
  const named = hints.l1Offset !== undefined && hints.l1Size !== undefined;
  if (named && hints.l1Offset! < fileSize) return { offset: hints.l1Offset!, size: hints.l1Size!, source: 'header' };
  const found = await scanForActiveL1(st, snaps, snapL1s);
  // An intact header naming an L1 past the end of the file: the file was cut short, and the L1's
  // slots are lost; unless a live L1 survives in the file (then the header's offset is what is damaged).
  if (named && hints.intact && !found?.live) return { offset: hints.l1Offset!, size: hints.l1Size!, source: 'header' };
  if (!found) return undefined;
  st.guesses.push(
    named
      ? `${found.note} (the header's L1 offset 0x${hints.l1Offset!.toString(16)} lies beyond the end of the file)`
      : found.note,
  );
  return found.l1;
}

/** Header lost: L1-like tables that no snapshot claims; contiguous clusters form one table. */
async function scanForActiveL1(
  st: ReconstructState,
  snaps: SnapshotInfo[],
  snapL1s: Set<number>,
): Promise<{ l1: ActiveL1; live: boolean; note: string } | undefined> {
  const { cs } = st;
  const starts = [...st.role.entries()]
    .filter(([o, r]) => r === 'l1' && !snapL1s.has(o))
    .map(([o]) => o)
    .sort((a, b) => a - b);
  const runs: Array<{ offset: number; clusters: number }> = [];
  for (const o of starts) {
    const last = runs[runs.length - 1];
    const end = last ? last.offset + last.clusters * cs : -1;
    // A sparse L1 spanning several clusters has all-zero clusters between its used ones.
    if (last && o >= end && o - end <= 64 * cs && (await allZero(st, end, o)))
      last.clusters = (o - last.offset) / cs + 1;
    else runs.push({ offset: o, clusters: 1 });
  }
  if (!runs.length) return undefined;
  // The active L1 is the one owning the most L2 tables of its own (snapshots share the rest).
  const snapL2 = new Set<number>();
  for (const s of snaps) {
    const buf = await readInFile(st, s.l1Offset, s.l1Size * 8);
    for (let p = 0; p < buf.length; p += 8) snapL2.add(l1Target(buf, p));
  }
  let best: { run: { offset: number; clusters: number }; own: number; total: number; live: boolean } | undefined;
  for (const run of runs) {
    const buf = await readPadded(st.io, run.offset, run.clusters * cs);
    let own = 0,
      total = 0;
    for (let p = 0; p < buf.length; p += 8) {
      const t = l1Target(buf, p);
      if (!t || !isL2(st, t)) continue;
      total++;
      if (!snapL2.has(t)) own++;
    }
    const rc = st.probe ? await st.probe.refcount(run.offset / cs) : undefined;
    const live = rc !== undefined && rc > 0;
    const better =
      !best ||
      (live && !best.live) ||
      (live === best.live && (own > best.own || (own === best.own && total > best.total)));
    if (better) best = { run, own, total, live };
  }
  if (!best) return undefined;
  const note =
    runs.length > 1
      ? `active L1 table chosen among ${runs.length} L1-like tables: 0x${best.run.offset.toString(16)} (owns ${best.own} L2 table(s) no snapshot uses)`
      : `active L1 table found by scanning at 0x${best.run.offset.toString(16)}`;
  return { l1: { offset: best.run.offset, size: best.run.clusters * (cs / 8), source: 'scan' }, live: best.live, note };
}

export interface L1Reading {
  placed: L2Placement[];
  lost: LostL2[];
  state: 'valid' | 'damaged' | 'lost';
}

export const L1_TRUNCATED = 'L1 entry beyond end of file (truncated): whether this range held data is unknown';

export async function readL1(st: ReconstructState, offset: number, size: number): Promise<L1Reading> {
  const { cs, fileSize, limit } = st;
  const bytes = Math.min(size, C.QCOW_MAX_L1_SIZE / 8) * 8;
  const buf = await readInFile(st, offset, bytes);
  // Entries the file no longer holds: each may have named an L2 table (only up to the disk's size).
  const wanted = st.hints.size ? Math.min(bytes / 8, Math.ceil(st.hints.size / st.coverage)) : bytes / 8;
  const cut: LostL2[] = [];
  for (let i = buf.length / 8; i < wanted; i++) cut.push({ l1Index: i, host: 0, reason: L1_TRUNCATED });
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
    // Flags with no offset, or an offset into the header or a refcount structure: QEMU never writes
    // such an entry, so it is damaged, and the table it named may be found elsewhere.
    const onto =
      t < cs
        ? 'the header'
        : st.refblocks.has(t)
          ? 'a refcount block'
          : st.role.get(t) === 'reftable'
            ? 'the refcount table'
            : undefined;
    if (t === 0 || onto) {
      bad++;
      lost.push({ l1Index: i, host: 0, reason: `L1 entry damaged (it points at ${onto ?? 'no table'})` });
      continue;
    }
    if (isL2(st, t)) placed.push({ l1Index: i, host: t, source: 'l1', confidence: 1 });
    else if (t >= fileSize) lost.push({ l1Index: i, host: t, reason: 'L2 table beyond end of file (truncated)' });
    else
      lost.push({
        l1Index: i,
        host: t,
        reason: `L2 table at 0x${t.toString(16)} destroyed (cluster no longer holds a table)`,
      });
  }
  // All zero, or mostly unreadable: nothing in it can be trusted to say "unallocated".
  // Judged on the entries the file still holds: a cut-off L1 is damaged, not lost.
  const state =
    (nonZero === 0 && !cut.length) || bad * 2 > nonZero
      ? 'lost'
      : bad > 0 || lost.length > 0 || cut.length > 0
        ? 'damaged'
        : 'valid';
  return { placed, lost: [...lost, ...cut], state };
}
