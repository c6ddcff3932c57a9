/**
 * The plan for an image whose only problem is leaked clusters that nothing refers to and that hold
 * only zeros, built from the checker's first pass instead of the planner's own reference walk.
 *
 * For such an image the full planner (planner.ts) has nothing to judge: no pointer to fix, no lost
 * table or data to keep (the clusters read as zeros), no COPIED flag that moves (no reference
 * changes), no header bit to clear. Its plan is QEMU's: lower each leaked refcount to 0, block by
 * block, in the 'lower' phase. The checker's references are exact (referencesAt), so the walk it
 * already made is the only one needed. Anything else about the image sends it to the full planner
 * (test/repair/leak-fast-path.test.ts compares both plans on real damaged images).
 */
import type { CheckAnalysis } from '../check/analyze.js';
import { u32 } from '../format/bytes.js';
import { isZero } from '../format/cluster-content.js';
import * as C from '../format/constants.js';
import { getRefcount, setRefcount } from '../format/refcount.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { type PositionalIO, readPadded } from '../io/positional-io.js';
import { PlanBuilder } from './plan-builder.js';
import type { FixNote, RepairPlan } from './plan.js';

/** More leaked clusters than this go to the full planner (their contents are read here, one by one). */
const MAX_FAST_LEAKS = 65536;
/** Leaked clusters' contents read per call (bytes). */
const READ_BYTES = 1 << 20;

const LEAK_LINE = /^Leaked cluster \d+ refcount=\d+ reference=0$/;

/**
 * The leaked clusters (ascending) when the first pass found nothing but leaks of unreferenced
 * clusters inside the file, every one listed; otherwise undefined.
 */
export function leakOnlyClusters(before: CheckAnalysis): number[] | undefined {
  const c = before.counters;
  if (before.failed !== undefined || before.rebuild || before.roleMap || before.guestMap) return undefined;
  if (c.corruptions !== 0 || c.checkErrors !== 0 || c.leaks === 0 || c.leaks > MAX_FAST_LEAKS) return undefined;
  if (before.findings.length || before.findingsDropped) return undefined;
  if (!before.messages.every((m) => LEAK_LINE.test(m))) return undefined;
  const leaked: number[] = [];
  for (const a of before.anomalies) {
    if (a.kind !== 'leaked-cluster' || a.firstCluster === undefined || a.references !== 0) return undefined;
    for (let k = a.firstCluster; k < a.firstCluster + a.count; k++) {
      if (k < 1 || k >= before.fileClusters || before.referencesAt(k) !== 0) return undefined;
      if (leaked.length && k <= leaked[leaked.length - 1]!) return undefined;
      leaked.push(k);
    }
  }
  return leaked.length === c.leaks ? leaked : undefined;
}

/** The refcount block offset for reftable index `r` when it is a usable block inside the file, else undefined. */
export function refblockAt(img: Qcow2Image, r: number): number | undefined {
  if ((r + 1) * 8 > img.reftable.length) return undefined;
  const hi = u32(img.reftable, r * 8);
  const lo = u32(img.reftable, r * 8 + 4);
  if ((lo & ~C.REFT_OFFSET_MASK_LO) !== 0) return undefined;
  const off = hi * 0x1_0000_0000 + lo;
  const cs = img.clusterSize;
  if (off === 0 || off % cs !== 0 || off + cs > img.fileSize) return undefined;
  return off;
}

/** Whether every listed cluster reads as zeros (nothing a table lost, no table itself). */
async function allZero(io: PositionalIO, leaked: number[], cs: number): Promise<boolean> {
  const perRead = Math.max(1, Math.floor(READ_BYTES / cs));
  for (let i = 0; i < leaked.length; ) {
    let n = 1;
    while (n < perRead && i + n < leaked.length && leaked[i + n] === leaked[i]! + n) n++;
    const bytes = await readPadded(io, leaked[i]! * cs, n * cs);
    if (!isZero(bytes, 0, bytes.length)) return false;
    i += n;
  }
  return true;
}

/**
 * The plan for a leak-only image (see the file's head), or undefined when the image needs the full
 * planner. Reads the header, the refcount blocks holding the leaks and the leaked clusters; writes nothing.
 */
export async function planLeaksFromCheck(
  io: PositionalIO,
  before: CheckAnalysis,
  mode: 'leaks' | 'all',
  name: string,
): Promise<RepairPlan | undefined> {
  const leaked = leakOnlyClusters(before);
  if (!leaked) return undefined;
  const originalLength = await io.size();
  if (originalLength !== before.fileSize) return undefined;
  const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const h = img.header;
  const cs = img.clusterSize;
  if ((h.incompatibleFeatures & (C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT | C.INCOMPAT_DATA_FILE)) !== 0n)
    return undefined;
  if (cs !== before.clusterSize || !(await allZero(io, leaked, cs))) return undefined;

  const entries = img.geo.refcountBlockEntries;
  const order = img.geo.refcountOrder;
  const pb = new PlanBuilder(io, originalLength);
  const fixes: FixNote[] = [];
  for (let i = 0; i < leaked.length; ) {
    const r = Math.floor(leaked[i]! / entries);
    const off = refblockAt(img, r);
    if (off === undefined) return undefined;
    const first = r * entries;
    const old = await pb.read(off, cs);
    const next = old.slice();
    for (; i < leaked.length && leaked[i]! < first + entries; i++) {
      const k = leaked[i]!;
      const d = getRefcount(old, k - first, order);
      if (d === 0) return undefined;
      setRefcount(next, k - first, order, 0);
      fixes.push({
        kind: 'leak',
        counts: 'leak',
        qemuLine: `Repairing cluster ${k} refcount=${d} reference=0`,
        text: `cluster ${k}: refcount ${d} → 0 (0 reference(s))`,
      });
    }
    await pb.writeDiff('lower', off, old, next, 'refcount-block', `lower refcounts in block ${r}`);
  }
  return {
    image: name,
    mode,
    clusterSize: cs,
    originalLength,
    steps: pb.steps_(),
    fixes,
    refusals: [],
    rebuild: false,
    expected: { remainingCorruptions: 0, remainingLeaks: 0, fileLength: await pb.finalLength() },
    leaksFixed: fixes.length,
    corruptionsFixed: 0,
    guestRangesLost: [],
  };
}
