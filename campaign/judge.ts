// One case of the differential campaign: the damaged image goes through our check, `-r leaks`,
// `-r all` and salvage, and through `qemu-img check -r all`; what each leaves the guest reading is
// compared sector by sector with the ground truth (always read by QEMU: `qemu-img convert`).
//
// The verdicts:
//   lostVsQemu   bytes QEMU's repair keeps readable that ours does not
//   falseClaims  a claim that does not hold against the ground truth: an exit 0 or 4 repair whose
//                image differs outside the guest ranges it says are lost (unless, with 4, it says it
//                freed data whose place it does not know), or that qemu-img does not call clean; a "leaks only" check of an image whose data already differs; a salvage that
//                says nothing is lost (or names what is lost, and with exit 4/6 what it placed by
//                guess) and is wrong elsewhere; a repair that exits 0 yet loses bytes that salvage
//                of the same damaged file recovers with certainty (neither lost nor guessed)
//   refused      our repair refused a part (printed why) and left it for a person
//   undetectable the damage leaves metadata both tools call clean but changes what the guest reads
//                (e.g. a zero flag set on an allocated entry): no claim can be judged on it
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Base } from './bases.js';
import type { Damage } from './damage.js';
import { type OurCli, qemuImgAsync } from './tools.js';
import { SECTOR, type Truth, matchFile } from './truth.js';

export interface CaseResult {
  /** The case's number in its seed's sequence (the same seed and number give the same damage). */
  index: number;
  base: string;
  kind: string;
  what: string;
  qemuKeptBytes: number;
  oursKeptBytes: number;
  lostVsQemu: number;
  falseClaims: string[];
  refused: boolean;
  undetectable: boolean;
  /** Exit codes: our check, -r leaks, -r all, salvage; qemu-img check before and after its repair. */
  exits: { check: number; leaks: number; all: number; salvage: number; qemuCheck: number; qemuRepair: number };
  /** Free-form notes when something odd happened (a tool crashed, timed out). */
  notes: string[];
}

interface Range {
  start: number;
  length: number;
}

function inRanges(ranges: Range[], sector: number): boolean {
  const s = sector * SECTOR;
  return ranges.some((r) => s + SECTOR > r.start && s < r.start + r.length);
}

/**
 * Where the case's files go: `images` (a path prefix on a disk file system: QEMU's repair and ours
 * behave there as on users' disks), and `reads` (a prefix for QEMU's raw readings, best in memory:
 * a 64 MiB reading is mostly holes, which a disk file system fills with zeroed page-cache pages).
 */
export interface Scratch {
  images: string;
  reads: string;
}

/** What the guest reads on `image`, as QEMU reads it, matched sector by sector against the truth. */
async function readAsRaw(truth: Truth, image: string, raw: string): Promise<Uint8Array> {
  const r = await qemuImgAsync(['convert', '-U', '-O', 'raw', image, raw]);
  try {
    return matchFile(truth, r.status === 0 ? raw : undefined);
  } finally {
    rmSync(raw, { force: true });
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `guest-ranges-lost` from our repair's JSON (absent = the repair claims nothing was lost). */
function rangesLost(json: Record<string, unknown> | undefined): Range[] {
  const v = json?.['guest-ranges-lost'];
  return Array.isArray(v) ? (v as Range[]).filter((r) => typeof r.start === 'number') : [];
}

function countKept(mask: Uint8Array, truth: Truth): number {
  let kept = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] && truth.nonZero[i]) kept += SECTOR;
  return kept;
}

/** Bytes of data the repair freed without knowing their guest place (`guest-data-lost-unplaced`). */
function unplacedBytes(json: Record<string, unknown> | undefined): number {
  const v = json?.['guest-data-lost-unplaced'] as { bytes?: unknown } | undefined;
  return typeof v?.bytes === 'number' ? v.bytes : 0;
}

/** Exit 0 says clean and nothing lost; exit 4 says clean, with the data lost named (ranges), or
 * freed at places unknown (`unplaced`, when only then may bytes differ outside the ranges). */
function claimsOfRepair(label: string, r: Repaired, claims: string[]): void {
  const { exit, qemuVerdict, mask, lost } = r;
  if (exit !== 0 && exit !== 4) return;
  if (qemuVerdict !== 0) claims.push(`${label} exited ${exit} but qemu-img check of its result exits ${qemuVerdict}`);
  if (exit === 4 && r.unplaced > 0) return;
  let wrong = 0;
  for (let i = 0; i < mask.length; i++) if (!mask[i] && !inRanges(lost, i)) wrong++;
  if (wrong > 0)
    claims.push(`${label} exited ${exit} but ${wrong * SECTOR} guest bytes differ outside the ranges it names`);
}

interface Salvaged {
  exit: number;
  mask: Uint8Array;
  lost: Range[];
  /** Guest ranges the report says were placed by guess (exit 4 or 6): their bytes may sit elsewhere. */
  guessed: Range[];
}

type ReportView = {
  lost?: Array<{ start: number; end: number }>;
  placement?: Array<{ start: number; end: number; how: string; confidence: number }>;
};

async function runSalvage(ours: OurCli, file: string, truth: Truth): Promise<Salvaged> {
  const out = `${file}.salvaged.raw`;
  const report = `${file}.salvage.json`;
  rmSync(out, { force: true });
  rmSync(report, { force: true });
  const r = await ours(['salvage', file, out, '--report', report]);
  // No output: salvage refused or failed (its exit code says which), and nothing matches.
  const got = existsSync(out) ? out : undefined;
  let lost: Range[] = [];
  let guessed: Range[] = [];
  try {
    if (got === undefined) throw new Error('no output');
    const rep = parseJson(readFileSync(report, 'utf8'));
    const view = ((rep?.views as ReportView[]) ?? [])[0];
    lost = (view?.lost ?? []).map((l) => ({ start: l.start, length: l.end - l.start }));
    guessed = (view?.placement ?? [])
      .filter((p) => p.how === 'by-guess' || p.confidence < 1)
      .map((p) => ({ start: p.start, length: p.end - p.start }));
  } catch {
    // no report: no lost ranges named
  }
  const mask = matchFile(truth, got);
  rmSync(out, { force: true });
  rmSync(report, { force: true });
  return { exit: r.status, mask, lost, guessed };
}

interface Repaired {
  exit: number;
  qemuVerdict: number;
  mask: Uint8Array;
  lost: Range[];
  /** Bytes freed whose guest place the repair says it does not know. */
  unplaced: number;
  refused: boolean;
  output: string;
}

async function runOurRepair(
  ours: OurCli,
  file: string,
  raw: string,
  mode: 'leaks' | 'all',
  truth: Truth,
  bytes: Uint8Array,
): Promise<Repaired> {
  writeFileSync(file, bytes);
  const r = await ours(['check', '-r', mode, '--no-journal', '--output=json', file]);
  const q = await qemuImgAsync(['check', '-U', file]);
  const mask = await readAsRaw(truth, file, raw);
  const output = `${r.stdout}\n${r.stderr}`;
  return {
    exit: r.status,
    qemuVerdict: q.status,
    mask,
    lost: rangesLost(parseJson(r.stdout)),
    unplaced: unplacedBytes(parseJson(r.stdout)),
    // The CLI prints each refused part as "not repaired: …" (and some notes say "refused to …").
    refused: /refus|not repaired: /i.test(output),
    output,
  };
}

/** Judge one damaged image; `ours` runs our CLI (a process per command, or in-process: the same entry point). */
export async function judgeCase(
  ours: OurCli,
  base: Base,
  dmg: Damage,
  { images: scratch, reads }: Scratch,
  index: number,
): Promise<CaseResult> {
  const truth = base.truth;
  const claims: string[] = [];
  const notes: string[] = [];
  const damaged = `${scratch}.qcow2`;
  writeFileSync(damaged, dmg.bytes);

  // Inspecting: our check and QEMU's, both read-only.
  const check = await ours(['check', '--output=json', damaged]);
  const qemuCheck = await qemuImgAsync(['check', '-U', damaged]);
  const after = readFileSync(damaged);
  if (Buffer.compare(after, Buffer.from(dmg.bytes)) !== 0) claims.push('check changed bytes of the image it inspected');
  const asIs = await readAsRaw(truth, damaged, `${reads}.asis.raw`);
  const undetectable = check.status === 0 && qemuCheck.status === 0 && asIs.includes(0);
  const checkJson = parseJson(check.stdout);
  const anomalies = (checkJson?.anomalies as Array<{ kind: string; severity: string }>) ?? [];
  // Lost tables and leaked clusters that still hold data are findings that say data is at risk.
  const atRisk = (a: { kind: string; severity: string }): boolean =>
    a.severity === 'error' || a.kind === 'lost-table' || a.kind === 'orphaned-data';
  const leaksOnly = check.status === 3 && !anomalies.some(atRisk);
  if (leaksOnly && asIs.includes(0))
    claims.push('check said "leaks only, no harm to data" but guest data already differs');

  // QEMU's repair, on its own copy.
  const qemuFile = `${scratch}.qemu.qcow2`;
  writeFileSync(qemuFile, dmg.bytes);
  const qemuRepair = await qemuImgAsync(['check', '-r', 'all', qemuFile]);
  const qemuMask = await readAsRaw(truth, qemuFile, `${reads}.qemu.raw`);

  const leaks = await runOurRepair(ours, `${scratch}.leaks.qcow2`, `${reads}.leaks.raw`, 'leaks', truth, dmg.bytes);
  const all = await runOurRepair(ours, `${scratch}.all.qcow2`, `${reads}.all.raw`, 'all', truth, dmg.bytes);
  const salvage = await runSalvage(ours, damaged, truth);

  let lostVsQemu = 0;
  for (let i = 0; i < qemuMask.length; i++) if (qemuMask[i] && !all.mask[i] && truth.nonZero[i]) lostVsQemu += SECTOR;

  if (!undetectable) {
    claimsOfRepair('check -r leaks', leaks, claims);
    claimsOfRepair('check -r all', all, claims);
    if (salvage.exit === 0 && salvage.mask.includes(0))
      claims.push('salvage said nothing is lost but guest data differs');
    if (salvage.exit === 2 || salvage.exit === 4 || salvage.exit === 6) {
      // Lost ranges are named; with 4 and 6 the ranges placed by guess are too: every other byte must hold.
      const named = salvage.exit === 2 ? salvage.lost : [...salvage.lost, ...salvage.guessed];
      let wrong = 0;
      for (let i = 0; i < salvage.mask.length; i++) if (!salvage.mask[i] && !inRanges(named, i)) wrong++;
      if (wrong > 0)
        claims.push(
          salvage.exit === 2
            ? `salvage named its lost ranges but ${wrong * SECTOR} other guest bytes differ`
            : `salvage named its lost and guessed ranges (exit ${salvage.exit}) but ${wrong * SECTOR} other guest bytes differ`,
        );
    }
    if (all.exit === 0 && [0, 2, 4, 6].includes(salvage.exit)) {
      let below = 0;
      for (let i = 0; i < salvage.mask.length; i++)
        if (
          salvage.mask[i] &&
          !inRanges(salvage.lost, i) &&
          !inRanges(salvage.guessed, i) &&
          !all.mask[i] &&
          !inRanges(all.lost, i)
        )
          below++;
      if (below > 0)
        claims.push(`check -r all exited 0 but loses ${below * SECTOR} bytes salvage recovers with certainty`);
    }
  }
  if (all.exit !== 0 && all.exit !== 130 && !all.refused && all.qemuVerdict !== 0)
    notes.push(
      `check -r all exited ${all.exit}, printed no refusal, and qemu-img check still exits ${all.qemuVerdict}`,
    );
  for (const f of [damaged, qemuFile, `${scratch}.leaks.qcow2`, `${scratch}.all.qcow2`]) rmSync(f, { force: true });
  return {
    index,
    base: base.name,
    kind: dmg.kind,
    what: dmg.what,
    qemuKeptBytes: countKept(qemuMask, truth),
    oursKeptBytes: countKept(all.mask, truth),
    lostVsQemu,
    falseClaims: claims,
    refused: all.refused,
    undetectable,
    exits: {
      check: check.status,
      leaks: leaks.exit,
      all: all.exit,
      salvage: salvage.exit,
      qemuCheck: qemuCheck.status,
      qemuRepair: qemuRepair.status,
    },
    notes,
  };
}
