// Internal snapshots: create, delete, revert (qcow2.md §5.5), in an order where a crash leaves at
// worst leaks — plus, unavoidably (QEMU has the same windows), COPIED flags that disagree with a
// refcount while no second reference exists, which is harmless (see engine/lab/judge.ts).
//   create: L1 copy durable → refcounts +1 durable → COPIED flags cleared → new snapshot table
//           durable → 12-byte header switch → old table freed
//   delete: new table durable → header switch → refcounts −1 → COPIED flags restored
//   revert: refcounts +1 on the snapshot's tree durable → active L1 overwritten durably →
//           refcounts −1 on the old tree → COPIED flags recomputed
import * as C from '../format/constants.js';
import { putU32, putU64, u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import { encodeSnapshotEntry, type SnapshotEntry } from '../format/snapshot.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import { WriteError } from './write-error.js';
import type { Qcow2Writer } from './writer.js';

/** The snapshot table as on disk. */
export async function listSnapshots(w: Qcow2Writer): Promise<SnapshotEntry[]> {
  const img = await Qcow2Image.open(w.io);
  return (await img.readSnapshots()).entries;
}

function findSnapshot(list: SnapshotEntry[], idOrName: string, op: string): SnapshotEntry {
  const s = list.find((e) => e.id === idOrName) ?? list.find((e) => e.name === idOrName);
  if (!s) throw new WriteError(op, `no snapshot with id or name '${idOrName}'`, { usage: true });
  return s;
}

/** Add `delta` to the refcount of every cluster reachable from an L1 table (L2 tables and data). */
async function updateTreeRefcounts(w: Qcow2Writer, l1: Uint8Array, entries: number, delta: number): Promise<void> {
  const cs = w.clusterSize;
  for (let i = 0; i < entries; i++) {
    const l2off = l1Offset(u32(l1, i * 8), u32(l1, i * 8 + 4));
    if (l2off === 0) continue;
    const l2 = (await w.l2Cache.get(l2off)).slice();
    for (let j = 0; j < w.geo.l2Entries; j++) {
      const hi = u32(l2, j * 8);
      const lo = u32(l2, j * 8 + 4);
      const t = classifyL2(hi, lo, false, false);
      if (t === ClusterType.Normal || t === ClusterType.ZeroAlloc) await w.alloc.change(l2Offset(hi, lo) / cs, delta);
      else if (t === ClusterType.Compressed) {
        const d = decodeCompressed(hi, lo, w.geo);
        for (let c = Math.floor(d.offset / cs); c <= Math.floor((d.offset + d.size - 1) / cs); c++)
          await w.alloc.change(c, delta);
      }
    }
    await w.alloc.change(l2off / cs, delta);
  }
}

/**
 * Make every COPIED flag of the active tables match the (in-memory) refcounts: L2 entries through
 * the L2 cache, then the L1 table written whole. Refcounts must be durable before (callers flush).
 */
async function recomputeCopied(w: Qcow2Writer): Promise<void> {
  const cs = w.clusterSize;
  let l1Changed = false;
  for (let i = 0; i < w.header.l1Size; i++) {
    const [hi, lo] = w.l1Entry(i);
    const l2off = l1Offset(hi, lo);
    if (l2off === 0) continue;
    const want = (await w.alloc.refcount(l2off / cs)) === 1;
    if (want !== ((hi & C.OFLAG_COPIED_HI) !== 0)) {
      w.setL1Entry(i, want ? (hi | C.OFLAG_COPIED_HI) >>> 0 : (hi & ~C.OFLAG_COPIED_HI) >>> 0, lo);
      l1Changed = true;
    }
    let changed = false;
    const l2 = await w.l2Cache.get(l2off);
    for (let j = 0; j < w.geo.l2Entries; j++) {
      const eh = u32(l2, j * 8);
      const el = u32(l2, j * 8 + 4);
      const t = classifyL2(eh, el, false, false);
      if (t !== ClusterType.Normal && t !== ClusterType.ZeroAlloc) continue;
      const one = (await w.alloc.refcount(l2Offset(eh, el) / cs)) === 1;
      if (one !== ((eh & C.OFLAG_COPIED_HI) !== 0)) {
        const cur = await w.l2Cache.get(l2off);
        putU32(cur, j * 8, one ? (eh | C.OFLAG_COPIED_HI) >>> 0 : (eh & ~C.OFLAG_COPIED_HI) >>> 0);
        changed = true;
      }
    }
    if (changed) {
      await w.markDirtyIfLazy();
      await w.l2Cache.markDirty(l2off);
    }
  }
  await w.l2Cache.flush();
  if (l1Changed) await w.writeL1Table();
}

/** Write a new snapshot table into fresh clusters and switch the header to it; free the old one. */
async function replaceSnapshotTable(
  w: Qcow2Writer,
  entries: SnapshotEntry[],
  oldOffset: number,
  oldBytes: number,
): Promise<void> {
  const cs = w.clusterSize;
  const parts = entries.map((e) => encodeSnapshotEntry(e, w.header.size));
  const bytes = parts.reduce((n, p) => n + p.length, 0);
  if (bytes > C.QCOW_MAX_SNAPSHOTS_SIZE)
    throw new WriteError('snapshot table', `table would exceed ${C.QCOW_MAX_SNAPSHOTS_SIZE} bytes`);
  let off = 0;
  if (entries.length > 0) {
    const clusters = Math.ceil(bytes / cs);
    off = (await w.alloc.alloc(clusters)) * cs;
    await w.refCache.flush(); // allocate before reference
    const table = new Uint8Array(clusters * cs);
    let p = 0;
    for (const part of parts) {
      table.set(part, p);
      p += part.length;
    }
    w.event('snapshot_write_table');
    await w.io.write(off, table);
    await w.barrier(); // fill before link
  }
  const sw = new Uint8Array(12);
  putU32(sw, 0, entries.length);
  putU64(sw, 4, off);
  w.event('snapshot_switch_table');
  await w.io.write(C.HDR.nbSnapshots, sw);
  await w.barrier();
  w.header.nbSnapshots = entries.length;
  w.header.snapshotsOffset = off;
  w.overlap.invalidate();
  // Unreferenced durably: free the old table.
  if (oldBytes > 0) await w.alloc.free(oldOffset / cs, Math.ceil(oldBytes / cs));
}

async function tableBytes(w: Qcow2Writer): Promise<number> {
  const img = await Qcow2Image.open(w.io);
  return (await img.readSnapshots()).byteLength;
}

/** Create an internal snapshot of the current disk state. Returns its id. */
export function createSnapshot(w: Qcow2Writer, name: string): Promise<string> {
  return w.run(`create snapshot '${name}'`, async () => {
    await w.flushAllNow();
    const list = await listSnapshots(w);
    if (list.some((e) => e.name === name))
      throw new WriteError('create snapshot', `a snapshot named '${name}' exists`, { usage: true });
    if (list.length >= C.QCOW_MAX_SNAPSHOTS)
      throw new WriteError('create snapshot', 'too many snapshots', { usage: true });
    const cs = w.clusterSize;
    const oldBytes = await tableBytes(w);
    // 1. The snapshot's copy of the active L1, durable.
    const l1Bytes = w.header.l1Size * 8;
    let l1Off = 0;
    if (l1Bytes > 0) {
      const clusters = Math.ceil(l1Bytes / cs);
      l1Off = (await w.alloc.alloc(clusters)) * cs;
      await w.refCache.flush();
      const copy = new Uint8Array(clusters * cs);
      copy.set(w.l1);
      w.event('l1_update');
      await w.io.write(l1Off, copy);
      await w.barrier();
    }
    // 2. Everything reachable gets one more reference, durable before any flag or table change.
    await updateTreeRefcounts(w, w.l1, w.header.l1Size, +1);
    await w.refCache.flush();
    // 3. Shared now: clear COPIED in the active tables.
    await recomputeCopied(w);
    // 4–5. New table with the entry appended, header switch, old table freed.
    const now = Date.now();
    const id = String(list.reduce((m, e) => Math.max(m, Number.parseInt(e.id, 10) || 0), 0) + 1);
    const entry: SnapshotEntry = {
      tableOffset: 0,
      l1TableOffset: l1Off,
      l1Size: w.header.l1Size,
      id,
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1e6,
      vmClockNsec: 0,
      vmStateSize32: 0,
      extraDataSize: C.SNAPSHOT_EXTRA_QEMU_SIZE,
      extraData: new Uint8Array(0),
      vmStateSize: 0,
      diskSize: w.header.size,
      icount: -1,
      entryLength: 0,
    };
    await replaceSnapshotTable(w, [...list, entry], w.header.snapshotsOffset, oldBytes);
    await w.flushAllNow();
    return id;
  });
}

/** Delete an internal snapshot (by id, else by name). */
export function deleteSnapshot(w: Qcow2Writer, idOrName: string): Promise<void> {
  return w.run(`delete snapshot '${idOrName}'`, async () => {
    await w.flushAllNow();
    const list = await listSnapshots(w);
    const s = findSnapshot(list, idOrName, 'delete snapshot');
    const cs = w.clusterSize;
    const oldBytes = await tableBytes(w);
    const snapL1 = await readPadded(w.io, s.l1TableOffset, s.l1Size * 8);
    // 1. Remove the reference (durably) ...
    await replaceSnapshotTable(
      w,
      list.filter((e) => e !== s),
      w.header.snapshotsOffset,
      oldBytes,
    );
    // 2. ... then drop the refcounts of its tree and its L1 copy.
    await updateTreeRefcounts(w, snapL1, s.l1Size, -1);
    if (s.l1Size > 0) await w.alloc.free(s.l1TableOffset / cs, Math.ceil((s.l1Size * 8) / cs));
    await w.refCache.flush();
    // 3. Clusters no longer shared become writable in place again.
    await recomputeCopied(w);
    await w.flushAllNow();
  });
}

/** Make the active disk state equal to a snapshot's (by id, else by name). */
export function revertSnapshot(w: Qcow2Writer, idOrName: string): Promise<void> {
  return w.run(`revert to snapshot '${idOrName}'`, async () => {
    await w.flushAllNow();
    const list = await listSnapshots(w);
    const s = findSnapshot(list, idOrName, 'revert to snapshot');
    if (s.diskSize !== undefined && s.diskSize !== w.header.size)
      throw new WriteError(
        'revert to snapshot',
        `the snapshot's disk size ${s.diskSize} differs from the current ${w.header.size}`,
        { usage: true },
      );
    if (s.l1Size > w.header.l1Size) await w.growL1(s.l1Size);
    const snapL1 = await readPadded(w.io, s.l1TableOffset, s.l1Size * 8);
    const cs = w.clusterSize;
    // 1. The snapshot's tree gets its new references counted first, durably.
    await updateTreeRefcounts(w, snapL1, s.l1Size, +1);
    await w.refCache.flush();
    // 2. The active L1 becomes the snapshot's, with COPIED flags true to the new refcounts.
    const next = new Uint8Array(w.header.l1Size * 8);
    next.set(snapL1.subarray(0, Math.min(snapL1.length, next.length)));
    for (let i = 0; i < s.l1Size; i++) {
      const hi = u32(next, i * 8);
      const lo = u32(next, i * 8 + 4);
      const off = l1Offset(hi, lo);
      if (off === 0) continue;
      const one = (await w.alloc.refcount(off / cs)) === 1;
      putU32(next, i * 8, one ? (hi | C.OFLAG_COPIED_HI) >>> 0 : (hi & ~C.OFLAG_COPIED_HI) >>> 0);
    }
    const old = w.l1;
    w.l1 = next;
    await w.writeL1Table();
    // 3. The old tree loses the active references (no longer on disk).
    await updateTreeRefcounts(w, old, w.header.l1Size, -1);
    await w.refCache.flush();
    await recomputeCopied(w);
    await w.flushAllNow();
  });
}
