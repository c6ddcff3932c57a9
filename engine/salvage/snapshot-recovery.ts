// The internal snapshots: from the snapshot table the header names, or, when that is gone or
// unreadable, from the best copy the scan found (QEMU leaves old copies behind when it rewrites it).
import * as C from '../format/constants.js';
import { u16, u32 } from '../format/bytes.js';
import { decodeSnapshotEntry, snapshotEntryLength } from '../format/snapshot.js';
import { readPadded } from '../io/positional-io.js';
import type { ReconstructState } from './reconstruct-state.js';
import type { Reconstruction } from './types.js';

export interface SnapshotInfo {
  id: string;
  name: string;
  l1Offset: number;
  l1Size: number;
  diskSize?: number;
  date: number;
  order: number;
}

export interface FoundSnapshots {
  list: SnapshotInfo[];
  table?: Reconstruction['structures']['snapshotTable'];
  /** Bytes the readable entries of that table span. */
  tableBytes?: number;
}

export async function findSnapshots(st: ReconstructState): Promise<FoundSnapshots> {
  const { hints, cs } = st;
  if (hints.snapshotsOffset !== undefined && hints.nbSnapshots) {
    const { list, bytes } = await decodeSnapshotTable(st, hints.snapshotsOffset, hints.nbSnapshots);
    if (list.length) {
      if (list.length < hints.nbSnapshots)
        st.warnings.push(`snapshot table: only ${list.length} of ${hints.nbSnapshots} entries readable`);
      return {
        list,
        table: { offset: hints.snapshotsOffset, source: 'header', entries: list.length },
        tableBytes: bytes,
      };
    }
    st.warnings.push(
      `snapshot table at 0x${hints.snapshotsOffset.toString(16)} is unreadable; looking for another copy`,
    );
  } else if (hints.intact) {
    return { list: [] }; // an intact header says there are no snapshots
  }
  // Prefer a live copy, then the one with the most entries, then the newest.
  let best: { off: number; list: SnapshotInfo[]; bytes: number; live: boolean } | undefined;
  for (const off of st.findings.snapshotTables) {
    const { list, bytes } = await decodeSnapshotTable(st, off, C.QCOW_MAX_SNAPSHOTS);
    if (!list.length) continue;
    const rc = st.probe ? await st.probe.refcount(off / cs) : undefined;
    const live = rc !== undefined && rc > 0;
    if (!best || (live && !best.live) || (live === best.live && list.length >= best.list.length))
      best = { off, list, bytes, live };
  }
  if (!best) return { list: [] };
  if (st.findings.snapshotTables.length > 1)
    st.guesses.push(
      `snapshot table chosen among ${st.findings.snapshotTables.length} candidates: 0x${best.off.toString(16)}`,
    );
  return {
    list: best.list,
    table: { offset: best.off, source: 'scan', entries: best.list.length },
    // A copy found by scanning is only as live as its refcount says.
    tableBytes: best.live ? best.bytes : undefined,
  };
}

async function decodeSnapshotTable(
  st: ReconstructState,
  offset: number,
  max: number,
): Promise<{ list: SnapshotInfo[]; bytes: number }> {
  const { cs, fileSize } = st;
  const list: SnapshotInfo[] = [];
  let pos = offset;
  for (let i = 0; i < max && pos + C.SNAPSHOT_ENTRY_FIXED_SIZE <= fileSize; i++) {
    const fixed = await readPadded(st.io, pos, C.SNAPSHOT_ENTRY_FIXED_SIZE);
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
    const e = decodeSnapshotEntry(await readPadded(st.io, pos, len), 0, pos - offset);
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
  return { list, bytes: pos - offset };
}
