// Data clusters mapped more often than their refcount allows: two L2 tables (or two entries) name the
// same cluster while the refcount says fewer may. QEMU only shares a cluster through snapshots, and
// counts every sharer; so one of the mappings is damage (an L2 table overwritten with another's
// content, an entry redirected onto another's data), and which one cannot be told from the tables.
// Both tables stay in the disk, but no longer as certain: their data is "placed by guess".
import { dataHosts } from './l2-data-hosts.js';
import { hx, type ReconstructState } from './reconstruct-state.js';
import type { GuestView, L2Placement } from './types.js';

const CONFIDENCE = 0.5;

export async function doubtDuplicateMappings(
  st: ReconstructState,
  views: GuestView[],
  metadata: Map<number, string>,
): Promise<void> {
  const probe = st.probe;
  if (!probe || st.hints.dirty) return;
  // Per data cluster: how many L1 paths reach it, and through which placements.
  const refs = new Map<number, { n: number; by: Set<L2Placement> }>();
  const read = new Map<number, number[]>();
  for (const v of views)
    for (const p of v.l2.values()) {
      if (p.confidence < 1) continue;
      let hosts = read.get(p.host);
      if (!hosts) {
        hosts = dataHosts(st, await st.cache.get(p.host), { zeroAlloc: true });
        read.set(p.host, hosts);
      }
      for (const x of hosts) {
        const r = refs.get(x) ?? { n: 0, by: new Set<L2Placement>() };
        r.n++;
        r.by.add(p);
        refs.set(x, r);
      }
    }
  const doubted = new Set<L2Placement>();
  let clusters = 0;
  for (const [x, r] of refs) {
    // An entry on metadata is damage already reported as a lost range, whichever disk reads it.
    if (r.n < 2 || metadata.has(x / st.cs)) continue;
    const rc = await probe.refcount(x / st.cs);
    if (rc === undefined || rc >= r.n) continue;
    clusters++;
    for (const p of r.by) doubted.add(p);
  }
  if (!doubted.size) return;
  const tables = [...new Set([...doubted].map((p) => p.host))];
  for (const p of doubted) {
    p.confidence = Math.min(p.confidence, CONFIDENCE);
    p.evidence = `${clusters} data cluster(s) are mapped more often than their refcount allows: this table or another of ${tables.map(hx).join(', ')} is damaged (which one cannot be told)`;
  }
  st.warnings.push(
    `${clusters} data cluster(s) are mapped by more entries than their refcount counts (L2 tables ${tables.slice(0, 8).map(hx).join(', ')}${tables.length > 8 ? ', …' : ''}): one mapping of each is damage, and which one cannot be told; their data is placed by guess`,
  );
}
