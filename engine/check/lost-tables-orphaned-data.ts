// Orphaned data: leaked clusters that are no table but still hold guest data a damaged table no
// longer maps. QEMU counts them as leaks ("no harm to data") and its repair frees them; they are
// reported as 'orphaned-data' instead, so no verdict calls them harmless. Two shapes:
//   - a leaked cluster nothing refers to whose content is not zeros (where it belonged is unknown);
//   - a data cluster a snapshot maps at guest offset g, whose refcount still counts one more user,
//     while the active disk has nothing at g: the active table lost its pointer (g is known).
// QEMU's counters and messages stay QEMU's.
import { u32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import { l1Offset, l2Offset } from '../format/l2-entry.js';
import { readPadded } from '../io/positional-io.js';
import type { CheckState } from './state.js';

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

/** Data clusters with a leaked share that a snapshot maps where the active disk maps nothing. */
async function lostShares(state: CheckState, leaked: Uint8Array): Promise<LostShare[]> {
  const cs = state.clusterSize;
  const img = state.image;
  const step = state.extendedL2 ? C.L2_ENTRY_SIZE_EXT : C.L2_ENTRY_SIZE_STD;
  const span = img.geo.l2Entries * cs;
  const activeL2 = new Map<number, Uint8Array>();
  const activeEmpty = async (guest: number): Promise<boolean> => {
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
  const out: LostShare[] = [];
  const found = new Set<number>();
  const readTables = new Set<number>();
  let budget = SNAPSHOT_TABLE_BUDGET;
  for (const s of state.snapshots) {
    if (!s.l1Size || s.l1TableOffset % cs !== 0 || s.l1TableOffset >= state.fileSize) continue;
    const l1 = await readPadded(img.io, s.l1TableOffset, Math.min(s.l1Size, img.l1.length / 8) * 8);
    for (let i = 0; i < l1.length / 8 && budget > 0; i++) {
      const off = l1Offset(u32(l1, 8 * i), u32(l1, 8 * i + 4));
      if (!off || off % cs !== 0 || off >= state.fileSize || readTables.has(off)) continue;
      readTables.add(off);
      budget -= cs;
      state.checkCancel();
      const t = await readPadded(img.io, off, cs);
      for (let j = 0; j < img.geo.l2Entries; j++) {
        const hi = u32(t, j * step);
        if (hi & C.OFLAG_COMPRESSED_HI) continue;
        const data = l2Offset(hi, u32(t, j * step + 4));
        const k = data / cs;
        if (!data || data % cs !== 0 || k >= leaked.length || !leaked[k] || found.has(k)) continue;
        if (state.refAt(k) === 0 || state.metaRoles.has(k)) continue;
        const guest = i * span + j * cs;
        if (!(await activeEmpty(guest))) continue;
        found.add(k);
        out.push({ cluster: k, guest, snapshotId: s.id });
      }
    }
  }
  return out;
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
