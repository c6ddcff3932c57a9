/**
 * The repair plan: every byte the repair will write, in the order it will write it, with the bytes
 * it replaces and why. Pure data (JSON-serialisable once `toJson` turned the byte arrays into hex),
 * so `--dry-run` can print it and the app can show it before anything is touched.
 */

/** What a write changes, for people reading the plan. */
export type Structure =
  | 'header'
  | 'l1-entry'
  | 'l2-entry'
  | 'l2-table'
  | 'refcount-block'
  | 'refcount-table'
  | 'snapshot-table'
  | 'data-copy'
  | 'file-length';

/** One write of the plan. `oldBytes` are what the file holds now (zero-padded past end of file). */
export interface PlannedWrite {
  offset: number;
  structure: Structure;
  oldBytes: Uint8Array;
  newBytes: Uint8Array;
  /** Plain-language reason, e.g. "cluster 6 is leaked: refcount 1 → 0". */
  why: string;
}

/**
 * Phases run in this order, each ending with a flush barrier. The order is what makes an interrupted
 * repair at worst leaky (see qcow2.md §5.1/§5.9):
 *  mark-corrupt   set the corrupt bit before structural rewrites, so a half-done repair is never used
 *  clear-copied   clear OFLAG_COPIED on entries whose cluster will be shared (always harmless)
 *  grow           extend the file for structures placed past its end
 *  raise          raise refcounts / write new refcount structures (before anything points there)
 *  switch-reftable  the 12-byte header switch to a rebuilt refcount table
 *  data           copies of cross-linked clusters, new snapshot table contents
 *  relink         entry and pointer fixes (they now point only at counted clusters)
 *  lower          lower refcounts (after the references are gone)
 *  set-copied     set OFLAG_COPIED where the refcount is now exactly 1
 *  header         clear the dirty bit, then the corrupt bit (last)
 */
export const PHASES = [
  'mark-corrupt',
  'clear-copied',
  'grow',
  'raise',
  'switch-reftable',
  'data',
  'relink',
  'lower',
  'set-copied',
  'header',
] as const;
export type Phase = (typeof PHASES)[number];

export interface PlanStep {
  phase: Phase;
  writes: PlannedWrite[];
  /** New file length set at the start of this step (growth only; a repair never shrinks a file). */
  growTo?: number;
}

/** A problem the repair will not touch because fixing it would mean guessing. */
export interface Refusal {
  /** Stable machine name, e.g. 'unaligned-l2-pointer'. */
  kind: string;
  /** What is wrong, where. */
  what: string;
  /** What a human must decide. */
  decide: string;
}

/** A fix the plan makes, for the summary ("Repairing ..." lines are QEMU's; these are ours). */
export interface FixNote {
  kind: string;
  /** QEMU-style line for stderr (e.g. "Repairing cluster 6 refcount=1 reference=0"), when QEMU has one. */
  qemuLine?: string;
  /** Plain-language description. */
  text: string;
  /** True when this is where we deliberately differ from what `qemu-img check -r` would do. */
  differsFromQemu?: boolean;
  /** Printed as a note even where QEMU does the same (a decision the user should know about). */
  explain?: boolean;
  counts: 'leak' | 'corruption' | 'none';
}

/** A range of the guest disk, in bytes. */
export interface GuestRange {
  start: number;
  length: number;
}

export interface ExpectedResult {
  /** Problems that remain after the repair (refused parts). 0 means a clean image is expected. */
  remainingCorruptions: number;
  remainingLeaks: number;
  /** Final file length. */
  fileLength: number;
}

export interface RepairPlan {
  image: string;
  mode: 'leaks' | 'all';
  clusterSize: number;
  originalLength: number;
  steps: PlanStep[];
  fixes: FixNote[];
  refusals: Refusal[];
  /** Whether the refcount structure is rebuilt (new reftable + refblocks, header switch). */
  rebuild: boolean;
  expected: ExpectedResult;
  /** QEMU-compatible counts of what is repaired. */
  leaksFixed: number;
  corruptionsFixed: number;
  /**
   * Guest ranges whose data the damage destroyed: after the repair they read as zeros (or from the
   * backing file). Empty when no guest byte is lost.
   */
  guestRangesLost?: GuestRange[];
  /**
   * Leaked clusters that held data, freed by -r all, whose place in the guest disk nobody can tell:
   * guest data is lost somewhere `guestRangesLost` cannot name. Absent when there is none.
   */
  dataLostUnplaced?: { clusters: number; bytes: number; hostOffsets: number[] };
  /**
   * Set when the repair cannot run at all in this mode, with QEMU's wording (e.g. `-r leaks` on an
   * image whose refcount structure must be rebuilt: "need to rebuild refcount structures"). Nothing
   * is written.
   */
  failed?: string;
}

export function allWrites(plan: RepairPlan): PlannedWrite[] {
  return plan.steps.flatMap((s) => s.writes);
}

/** True when applying the plan changes nothing on disk. */
export function isEmptyPlan(plan: RepairPlan): boolean {
  return plan.steps.every((s) => s.writes.length === 0 && s.growTo === undefined);
}

const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** The plan as JSON data (bytes as hex strings). */
export function planToJson(plan: RepairPlan): unknown {
  return {
    ...plan,
    steps: plan.steps.map((s) => ({
      phase: s.phase,
      ...(s.growTo !== undefined ? { growTo: s.growTo } : {}),
      writes: s.writes.map((w) => ({
        offset: w.offset,
        length: w.newBytes.length,
        structure: w.structure,
        why: w.why,
        old: hexOf(w.oldBytes),
        new: hexOf(w.newBytes),
      })),
    })),
  };
}

/** Short hex for human output: whole value up to 16 bytes, else a digest of the change. */
function brief(b: Uint8Array): string {
  if (b.length <= 16) return hexOf(b);
  let nz = 0;
  for (const x of b) if (x !== 0) nz++;
  return `${b.length} bytes${nz === 0 ? ' (zeros)' : ''}`;
}

/** The plan as text lines, one per write, for --dry-run. */
export function planToText(plan: RepairPlan): string[] {
  const out: string[] = [];
  out.push(
    `Repair plan for ${plan.image} (-r ${plan.mode})${plan.rebuild ? ', rebuilding the refcount structure' : ''}:`,
  );
  let n = 0;
  for (const s of plan.steps) {
    if (s.writes.length === 0 && s.growTo === undefined) continue;
    out.push(`  phase ${s.phase}:`);
    if (s.growTo !== undefined) out.push(`    grow file to ${s.growTo} bytes`);
    for (const w of s.writes) {
      n++;
      out.push(
        `    ${n}. 0x${w.offset.toString(16)} ${w.structure}: ${brief(w.oldBytes)} -> ${brief(w.newBytes)}  (${w.why})`,
      );
    }
    out.push('    flush');
  }
  if (n === 0) out.push('  (no writes)');
  for (const f of plan.fixes) if (f.differsFromQemu || f.explain) out.push(`  note: ${f.text}`);
  for (const r of plan.refusals) out.push(`  not repaired: ${r.what} — ${r.decide}`);
  out.push(
    `Expected after repair: ${plan.expected.remainingCorruptions} errors, ${plan.expected.remainingLeaks} leaked clusters, file length ${plan.expected.fileLength}`,
  );
  return out;
}
