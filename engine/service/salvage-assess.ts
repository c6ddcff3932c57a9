// Is "repair leaks" dangerous here? A zeroed or overwritten L1 table leaves the L2 tables and the
// data they map in the file, counted in use but referenced by nothing: the checker calls them
// leaks ("no harm to data"), and freeing them would throw the guest data away. Read the leaked
// clusters and look for L2-like tables whose entries point at other leaked clusters.
import type { SalvageAssessment } from '../contract/contract.js';
import type { Session } from './session.js';
import { pointerTableSummary } from '../format/cluster-content.js';

/** Leaked clusters read at most, and bytes read at most (bounded time for huge leaks and 2 MiB clusters). */
const MAX_EXAMINED = 4096;
const MAX_BYTES = 256 * 1024 * 1024;

function leakedClusters(s: Session): Set<number> {
  const leaked = new Set<number>();
  for (const a of s.check?.anomalies ?? []) {
    if (a.kind !== 'leaked-cluster' || a.firstCluster === undefined) continue;
    for (let c = a.firstCluster; c < a.firstCluster + Math.max(1, a.count); c++) leaked.add(c);
  }
  return leaked;
}

export async function assessLeaks(s: Session): Promise<SalvageAssessment> {
  const leaked = leakedClusters(s);
  const g = s.image.geo;
  const cs = g.clusterSize;
  const fileSize = await s.io.size();
  const ctx = {
    clusterSize: cs,
    fileSize,
    targetLimit: fileSize,
    refcountOrder: g.refcountOrder,
    extendedL2: g.extendedL2,
  };
  let examined = 0;
  let orphanTables = 0;
  const pointedAt = new Set<number>();
  for (const c of leaked) {
    if (examined >= MAX_EXAMINED || examined * cs >= MAX_BYTES) break;
    examined++;
    const buf = await s.io.read(c * cs, cs);
    if (buf.length < cs) continue;
    const t = pointerTableSummary(buf, 0, ctx, c * cs);
    if (!t) continue;
    // Its targets: an orphan L2 table maps leaked data clusters (a stale refcount table would
    // point at refcount blocks, which are not leaked data; those are not counted).
    let hits = 0;
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let o = 0; o < cs; o += g.l2EntrySize) {
      const e = view.getBigUint64(o);
      if (e & (1n << 62n)) continue;
      const target = Number(e & 0x00ff_ffff_ffff_fe00n);
      if (target && leaked.has(target / cs) && target / cs !== c) {
        hits++;
        pointedAt.add(target / cs);
      }
    }
    if (hits > 0) orphanTables++;
  }
  const r: SalvageAssessment = { orphanTables, orphanData: pointedAt.size, examined };
  if (orphanTables > 0)
    r.advice =
      `${orphanTables} leaked cluster${orphanTables === 1 ? ' looks' : 's look'} like a table of your virtual disk still pointing at ` +
      `${pointedAt.size} cluster${pointedAt.size === 1 ? '' : 's'} of data: the table that should lead to ${orphanTables === 1 ? 'it' : 'them'} was lost ` +
      '(for example a zeroed L1 table). This data no longer shows in your virtual disk, and "repair leaks" would mark it free and lose it. ' +
      'Salvage it to a new image first: its preview says which parts of the disk it can put back at a certain place, ' +
      'and which only by guess (where no surviving table or structure in the data records their position).';
  return r;
}
