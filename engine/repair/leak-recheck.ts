/**
 * The re-check after a leak-only repair (leak-plan.ts), reusing the first pass for what the repair
 * did not touch. Such a repair writes only refcount entries of clusters nothing refers to. The
 * checker's walk never reads refcounts except to compare them with the references and to judge
 * COPIED flags of referenced clusters, so every table, every reference, every statistic and every
 * finding about referenced clusters is the first pass's; what can differ is the comparison inside
 * the refcount blocks the repair wrote, and those are re-read here and compared entry by entry.
 * Anything unexpected (a write elsewhere, a count that still differs, the last used cluster
 * freed) returns undefined and the caller runs the full re-check. test/repair/leak-fast-path.test.ts
 * compares this result with a full re-check on real damaged images.
 */
import type { CheckAnalysis } from '../check/analyze.js';
import { getRefcounts } from '../format/refcount.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { leakOnlyClusters, refblockAt } from './leak-plan.js';
import type { RepairPlan } from './plan.js';

export async function recheckLeakRepair(
  io: PositionalIO,
  before: CheckAnalysis,
  plan: RepairPlan,
): Promise<CheckAnalysis | undefined> {
  const leaked = leakOnlyClusters(before);
  if (!leaked || (await io.size()) !== before.fileSize) return undefined;
  // The last used cluster freed: the image end offset moves (the full re-check finds where to).
  if (leaked.includes(before.highestCluster)) return undefined;
  const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const cs = img.clusterSize;
  const entries = img.geo.refcountBlockEntries;
  const blocks = new Map<number, number>(); // reftable index → block offset
  for (const k of leaked) {
    const r = Math.floor(k / entries);
    if (blocks.has(r)) continue;
    const off = refblockAt(img, r);
    if (off === undefined) return undefined;
    blocks.set(r, off);
  }
  const written = [...blocks.values()];
  for (const s of plan.steps)
    for (const w of s.writes) {
      const inBlock = written.some((off) => w.offset >= off && w.offset + w.newBytes.length <= off + cs);
      if (s.phase !== 'lower' || w.structure !== 'refcount-block' || !inBlock) return undefined;
    }
  const nb = before.nbClusters;
  // At the refcount width (a 2 MiB block holds a million entries: fresh memory costs page faults).
  const order = img.geo.refcountOrder;
  const counts =
    order <= 3
      ? new Uint8Array(entries)
      : order === 4
        ? new Uint16Array(entries)
        : order === 5
          ? new Uint32Array(entries)
          : new Float64Array(entries);
  for (const [r, off] of blocks) {
    getRefcounts(await img.readStructure(off, cs, 'refcount block'), order, counts, entries);
    for (let j = 0; j < entries; j++) {
      const k = r * entries + j;
      // Past the compared range nothing is referenced: the checker would report a non-zero count there.
      if (counts[j] !== (k < nb ? before.referencesAt(k) : 0)) return undefined;
    }
  }
  return afterLeakRepair(before);
}

/** The first pass with the leaks gone (its reference array shared, not copied). */
function afterLeakRepair(before: CheckAnalysis): CheckAnalysis {
  const after = Object.defineProperties({}, Object.getOwnPropertyDescriptors(before)) as CheckAnalysis;
  after.counters = { ...before.counters, leaks: 0 };
  after.anomalies = [];
  after.messages = [];
  return after;
}
