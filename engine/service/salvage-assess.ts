// Should salvage come before any repair? A zeroed or overwritten L1 table leaves L2 tables and the
// data they map in the file, counted in use but referenced by nothing: QEMU calls them leaks. The
// checker's lost-table detector (check/lost-tables.ts, the one in the engine) has already found them;
// this only turns its findings into the wizard's advice.
import type { SalvageAssessment } from '../contract/contract.js';
import type { Session } from './session.js';

export async function assessLeaks(s: Session): Promise<SalvageAssessment> {
  let orphanTables = 0;
  let orphanData = 0;
  let examined = 0;
  for (const a of s.check?.anomalies ?? []) {
    if (a.kind === 'leaked-cluster') examined += Math.max(1, a.count);
    const t = a.lostTable;
    if (a.kind !== 'lost-table' || !t) continue;
    // An L1 table's data is counted through its L2 tables; count tables as the L2 tables that map data.
    orphanTables += t.table === 'l1' ? (t.l2Tables ?? 0) : t.table === 'l2' ? 1 : 0;
    orphanData += t.unreferencedDataClusters;
  }
  const r: SalvageAssessment = { orphanTables, orphanData, examined };
  if (orphanTables > 0)
    r.advice =
      `${orphanTables} leaked cluster${orphanTables === 1 ? ' is' : 's are'} a table of your virtual disk still pointing at ` +
      `${orphanData} cluster${orphanData === 1 ? '' : 's'} of data: the table that should lead to ${orphanTables === 1 ? 'it' : 'them'} was lost ` +
      '(for example a zeroed L1 table). This data no longer shows in your virtual disk. "Repair leaks" keeps these clusters ' +
      'and "repair all" puts a table back only where its place is certain. ' +
      'Salvage it to a new image first: its preview says which parts of the disk it can put back at a certain place, ' +
      'and which only by guess (where no surviving table or structure in the data records their position).';
  return r;
}
