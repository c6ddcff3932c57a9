// Placing L2 tables by what their data says about its own position (see guest-clues.ts). A
// structure that records an absolute guest offset pins its table alone; copies of one volume's
// structures (superblock backups, an LVM label) pin their tables together once the volume's start
// is the only one that fits: a copy in a table whose place is known, the disk size (the volume
// must fit in the disk), or a partition table that starts exactly one fitting partition there.
// A table two clues disagree about, or a slot two tables claim, is left to the guesses.
import { readPadded } from '../io/positional-io.js';
import { findGuestClues, type GuestClue } from './guest-clues.js';
import type { ReconstructState } from './reconstruct-state.js';
import { standardTarget } from './table-reader.js';

/** Data clusters read at most (a head and a tail sector each) in one reconstruction. */
const MAX_EXAMINED = 65536;
const HEAD = 2048;

export interface EvidencePin {
  host: number;
  l1Index: number;
  evidence: string;
}

interface Found {
  host: number;
  /** Guest offset of the clue relative to its table's first byte. */
  rel: number;
  clue: GuestClue;
}

export interface EvidenceInput {
  /** Tables to place. */
  orphans: number[];
  /** Tables whose L1 index is certain. */
  placed: Map<number, number>;
  /** L1 slots in the disk. */
  slots: number;
  /** Disk size in bytes, 0 when unknown (then no volume is placed by its fit in the disk). */
  virtualSize: number;
  /** May an orphan go to this slot? */
  free: (l1Index: number) => boolean;
}

export async function placeByEvidence(st: ReconstructState, inp: EvidenceInput): Promise<EvidencePin[]> {
  if (!inp.orphans.length) return [];
  const found = await collectClues(st, [...inp.orphans, ...inp.placed.keys()]);
  if (!found.length) return [];
  const { coverage } = st;
  const votes = new Map<number, Map<number, string>>();
  const vote = (host: number, slot: number, why: string): void => {
    if (inp.placed.has(host)) return;
    const m = votes.get(host) ?? new Map<number, string>();
    if (!m.has(slot)) m.set(slot, why);
    votes.set(host, m);
  };
  const slotFor = (guest: number, rel: number): number | undefined => {
    const d = guest - rel;
    if (d < 0 || d % coverage !== 0 || d / coverage >= inp.slots) return undefined;
    return d / coverage;
  };
  // 1. Absolute clues; partition tables in tables whose place is certain (or pinned here) count.
  const partitions: Array<{ start: number; length: number }> = [];
  for (const f of found) {
    if (!f.clue.absolute) continue;
    const fixed = inp.placed.get(f.host);
    const fits = f.clue.absolute.map((g) => slotFor(g, f.rel)).filter((x): x is number => x !== undefined);
    if (fixed === undefined && fits.length === 1) vote(f.host, fits[0]!, f.clue.kind);
    const at = fixed ?? (fits.length === 1 ? fits[0] : undefined);
    if (at !== undefined && f.clue.partitions && f.clue.absolute.includes(at * coverage + f.rel))
      partitions.push(...f.clue.partitions);
  }
  // 2. Volumes: every copy must agree on where the volume starts.
  const byVolume = new Map<string, Found[]>();
  for (const f of found)
    if (f.clue.volume !== undefined) byVolume.set(f.clue.volume, [...(byVolume.get(f.clue.volume) ?? []), f]);
  const diskEnd = inp.virtualSize || Number.POSITIVE_INFINITY;
  for (const [name, copies] of byVolume) {
    const start = volumeStart(copies, inp, coverage, diskEnd, partitions);
    if (start === undefined) continue;
    for (const c of copies) {
      const slot = slotFor(start.at + c.clue.volumeOffset!, c.rel);
      if (slot !== undefined)
        vote(c.host, slot, `${c.clue.kind}; ${name.split(':')[0]} volume at guest ${start.at} (${start.why})`);
    }
  }
  // 3. One slot per table and one table per slot; anything contested stays unplaced.
  const claims = new Map<number, number[]>();
  for (const [host, m] of votes)
    if (m.size === 1) claims.set([...m.keys()][0]!, [...(claims.get([...m.keys()][0]!) ?? []), host]);
  const pins: EvidencePin[] = [];
  for (const [slot, hosts] of claims) {
    if (hosts.length !== 1 || !inp.free(slot)) continue;
    pins.push({ host: hosts[0]!, l1Index: slot, evidence: votes.get(hosts[0]!)!.get(slot)! });
  }
  return pins;
}

function volumeStart(
  copies: Found[],
  inp: EvidenceInput,
  coverage: number,
  diskEnd: number,
  partitions: Array<{ start: number; length: number }>,
): { at: number; why: string } | undefined {
  const size = copies[0]!.clue.volumeSize!;
  if (copies.some((c) => c.clue.volumeSize !== size)) return undefined;
  // A copy in a table whose place is certain gives the start outright.
  const exact = new Set<number>();
  for (const c of copies) {
    const slot = inp.placed.get(c.host);
    if (slot !== undefined) exact.add(slot * coverage + c.rel - c.clue.volumeOffset!);
  }
  if (exact.size > 1) return undefined;
  const residues = new Set(copies.map((c) => mod(c.rel - c.clue.volumeOffset!, coverage)));
  if (residues.size !== 1) return undefined;
  if (exact.size === 1) {
    const at = [...exact][0]!;
    return at >= 0 && at + size <= diskEnd ? { at, why: 'a copy in a table whose place is certain' } : undefined;
  }
  const r = [...residues][0]!;
  const hi = diskEnd - size;
  if (hi < 0) return undefined;
  const fits: number[] = [];
  for (let at = r; at <= hi && fits.length < 3; at += coverage) fits.push(at);
  if (fits.length === 1 && inp.virtualSize) return { at: fits[0]!, why: 'the only start at which it fits in the disk' };
  const inPart = partitions.filter((p) => mod(p.start - r, coverage) === 0 && p.length >= size && p.start <= hi);
  if (inPart.length === 1) return { at: inPart[0]!.start, why: 'the only partition it fits' };
  return undefined;
}

function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

/** Clues in the data clusters of these tables, up to MAX_EXAMINED clusters in all. */
async function collectClues(st: ReconstructState, hosts: number[]): Promise<Found[]> {
  const { cs, step, l2Entries, fileSize } = st;
  const out: Found[] = [];
  let examined = 0;
  for (const h of hosts) {
    const l2 = await st.cache.get(h);
    for (let j = 0; j < l2Entries && examined < MAX_EXAMINED; j++) {
      const t = standardTarget(l2, j * step);
      if (!t || t % cs !== 0 || t + cs > fileSize) continue;
      examined++;
      const head = await readPadded(st.io, t, Math.min(cs, HEAD));
      const tail = cs > HEAD ? await readPadded(st.io, t + cs - 512, 512) : undefined;
      for (const clue of findGuestClues(head, tail, cs - 512)) out.push({ host: h, rel: j * cs + clue.at, clue });
    }
  }
  return out;
}

/** The disk size a GPT header in the first two or the last data cluster of these tables records. */
export async function gptDiskSize(st: ReconstructState, hosts: number[]): Promise<number> {
  const { cs, step, l2Entries, fileSize } = st;
  let size = 0;
  for (const h of hosts) {
    const l2 = await st.cache.get(h);
    let last = -1;
    for (let j = 0; j < l2Entries; j++) if (standardTarget(l2, j * step)) last = j;
    for (const j of new Set([0, 1, last])) {
      const t = j < 0 ? 0 : standardTarget(l2, j * step);
      if (!t || t % cs !== 0 || t >= fileSize) continue;
      for (const c of findGuestClues(await readPadded(st.io, t, cs))) size = Math.max(size, c.diskSize ?? 0);
    }
  }
  return size;
}
