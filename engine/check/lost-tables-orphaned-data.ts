// Orphaned data: leaked clusters that are no table but still hold guest data a damaged table no
// longer maps. QEMU counts them as leaks ("no harm to data") and its repair frees them; they are
// reported as 'orphaned-data' instead, so no verdict calls them harmless. Two shapes:
//   - a leaked cluster nothing refers to whose content is not zeros (where it belonged is unknown);
//   - a data cluster a snapshot maps at guest offset g, whose refcount still counts one more user,
//     while the active disk has nothing at g: the active table lost its pointer (g is known).
// QEMU's counters and messages stay QEMU's.
import { u32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { dataClusters, l1Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { Layer, TraversalVisitor } from '../image/traversal/index.js';
import { BATCH_BYTES, type CheckState } from './state.js';

/** Snapshot L2 tables read, at most, looking for the lost shares (bytes). */
const SNAPSHOT_TABLE_BUDGET = 64 * 1024 * 1024;

/**
 * Report leaked clusters holding data. `nonZero`: unreferenced clusters read whose content is neither
 * zeros nor a table; `atRisk`: clusters already reported as lost tables or their data.
 */
export async function reportOrphanedData(state: CheckState, nonZero: number[], atRisk: Uint8Array): Promise<void> {
  const leaked = new Uint8Array(state.fileClusters);
  let shares = 0;
  for (const a of state.anomalies.list) {
    if (a.kind !== 'leaked-cluster' || a.firstCluster === undefined) continue;
    for (let k = a.firstCluster; k < a.firstCluster + a.count && k < leaked.length; k++) {
      leaked[k] = 1;
      if (state.refAt(k) > 0 && !state.metaRoles.has(k)) shares++;
    }
  }
  const orphaned = new Uint8Array(state.fileClusters);
  for (const k of nonZero) {
    if (!leaked[k] || atRisk[k]) continue;
    orphaned[k] = 1;
    state.anomalies.add('orphaned-data', { cluster: k, references: 0 });
  }
  state.anomalies.cut();
  if (shares > 0 && state.snapshots.length > 0) {
    for (const s of await lostShares(state, leaked)) {
      orphaned[s.cluster] = 1;
      state.anomalies.cut();
      state.anomalies.add('orphaned-data', {
        cluster: s.cluster,
        references: state.refAt(s.cluster),
        referrer: { kind: 'snapshot-l2', guestOffset: s.guest, snapshotId: s.snapshotId },
      });
    }
    state.anomalies.cut();
  }
  for (const a of state.anomalies.list) if (a.kind === 'leaked-cluster') rewordLeak(a, orphaned);
}

interface LostShare {
  cluster: number;
  guest: number;
  snapshotId: string;
}

/**
 * Data clusters with a leaked share that a snapshot maps where the active disk maps nothing: the
 * snapshot layers walked on the traversal, each L2 table once, within SNAPSHOT_TABLE_BUDGET bytes of
 * tables (the reference visitor refuses every table past it, so none is read).
 */
async function lostShares(state: CheckState, leaked: Uint8Array): Promise<LostShare[]> {
  const cs = state.clusterSize;
  const activeEntries = state.image.l1.length / 8;
  const layers: Layer[] = state.snapshots.map((s) => ({
    l1Offset: s.l1TableOffset,
    l1Size: Math.min(s.l1Size, activeEntries),
    snapshotId: s.id,
  }));
  const activeEmpty = activeLookup(state);
  const out: LostShare[] = [];
  const found = new Set<number>();
  const budgeted = new Set<number>();
  let budget = SNAPSHOT_TABLE_BUDGET;
  /** This table's entries mapping a leaked share: cluster, guest offset, cluster, … */
  const shares: number[] = [];
  const visitor: TraversalVisitor = {
    reference: (r) => {
      if (r.target !== 'l2' || r.problem || budgeted.has(r.offset)) return true;
      if (budget <= 0) return false;
      budget -= cs;
      budgeted.add(r.offset);
      return true;
    },
    // A compressed stream counts one use in every host cluster it touches: any of them leaked is a share.
    l2Entry: (e) => {
      for (const k of dataClusters(e.hi, e.lo, state.image.geo, cs)) {
        if (k >= leaked.length || !leaked[k] || state.refAt(k) === 0 || state.metaRoles.has(k)) continue;
        shares.push(k, e.guestOffset);
        return;
      }
    },
    // In entry order, as each share is judged against the ones found before it.
    l2TableEnd: async (t) => {
      for (let n = 0; n < shares.length; n += 2) {
        const k = shares[n]!;
        const guest = shares[n + 1]!;
        if (found.has(k) || !(await activeEmpty(guest))) continue;
        found.add(k);
        out.push({ cluster: k, guest, snapshotId: t.layer!.snapshotId! });
      }
      shares.length = 0;
    },
  };
  await traverse(sourceOf(state.image), visitor, {
    layersOnly: layers,
    buffers: state.pools,
    batchBytes: BATCH_BYTES,
    yieldTurns: state.listened,
    ...(state.opts.cancel ? { cancel: state.opts.cancel } : {}),
  });
  return out;
}

/** Whether the active disk maps nothing at a guest offset (its L1 slot or L2 entry is zero). */
function activeLookup(state: CheckState): (guest: number) => Promise<boolean> {
  const cs = state.clusterSize;
  const img = state.image;
  const step = state.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const span = img.geo.l2Entries * cs;
  const activeL2 = new Map<number, Uint8Array>();
  return async (guest: number): Promise<boolean> => {
    const i = Math.floor(guest / span);
    if (guest >= img.virtualSize || i * 8 >= img.l1.length) return false;
    const off = l1Offset(u32(img.l1, 8 * i), u32(img.l1, 8 * i + 4));
    if (!off) return true;
    if (off % cs !== 0 || off >= state.fileSize) return false;
    let t = activeL2.get(off);
    if (!t) {
      t = await readPadded(img.io, off, cs);
      activeL2.set(off, t);
    }
    const j = Math.floor((guest % span) / cs) * step;
    return u32(t, j) === 0 && u32(t, j + 4) === 0;
  };
}

/** A leak run over orphaned data is not "only wasted space". */
function rewordLeak(
  a: { firstCluster?: number; count: number; explanation: string; fix: string },
  orphaned: Uint8Array,
): void {
  if (a.firstCluster === undefined) return;
  let hit = 0;
  for (let k = a.firstCluster; k < a.firstCluster + a.count && k < orphaned.length; k++) hit += orphaned[k]!;
  if (!hit) return;
  const which = hit === a.count ? 'These clusters' : `${hit} of these ${a.count} clusters`;
  a.explanation = `${which} still hold data that no table maps any more: possibly guest data a damaged table lost, not only wasted space.`;
  a.fix =
    'Copy the data out with `qcow2-doctor salvage` before anything frees these clusters; `qcow2-doctor check -r leaks` keeps them, `-r all` frees them.';
}
