// The differential campaign: seeded damage to real QEMU images with known guest content, judged
// against the ground truth and against `qemu-img check -r all` (see judge.ts for the verdicts).
// Exit 1 when any case loses bytes QEMU keeps or makes a false claim; the failing cases are printed
// (and written to --keep DIR with their damage, to become named regression tests).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Base, makeBases } from './bases.js';
import { DAMAGE_KINDS, type Damage, damage } from './damage.js';
import { type CaseResult, judgeCase } from './judge.js';
import { pick, prng } from './prng.js';

export interface CampaignOptions {
  budget: number;
  seed: number;
  cases: number;
  jobs: number;
  keep?: string;
  json: boolean;
  /** Only the base configurations whose names contain one of these (all when empty). */
  bases: string[];
}

export function parseArgs(argv: string[]): CampaignOptions {
  const o: CampaignOptions = { budget: 60, seed: 1, cases: Number.POSITIVE_INFINITY, jobs: 2, json: false, bases: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (v: string): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${a}: not a non-negative number: '${v}'`);
      return n;
    };
    if (a === '--budget') o.budget = num(next());
    else if (a === '--seed') o.seed = Math.floor(num(next()));
    else if (a === '--cases') o.cases = Math.floor(num(next()));
    else if (a === '--jobs') o.jobs = Math.max(1, Math.floor(num(next())));
    else if (a === '--keep') o.keep = next();
    else if (a === '--json') o.json = true;
    else if (a === '--bases') o.bases = next().split(',').filter(Boolean);
    else throw new Error(`unknown option '${a}'`);
  }
  return o;
}

/** Case `i` of seed `seed`: the same pair always gives the same base, damage kind and bytes. */
function makeCase(seed: number, i: number, bases: Base[], files: Map<Base, Uint8Array>): Damage & { base: Base } {
  const rng = prng(seed * 1_000_003 + i);
  for (let tries = 0; tries < 20; tries++) {
    const base = pick(rng, bases);
    const kind = pick(rng, DAMAGE_KINDS);
    const d = damage(rng, base, files.get(base)!, kind);
    if (d) return { ...d, base };
  }
  throw new Error(`case ${i}: no damage could be aimed`);
}

export async function runCampaign(o: CampaignOptions, log: (line: string) => void): Promise<CaseResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'q2d-campaign-'));
  try {
    const bases = await makeBases(dir, prng(o.seed), o.bases);
    const files = new Map(bases.map((b) => [b, new Uint8Array(readFileSync(b.image))]));
    log(`${bases.length} base images (${bases.map((b) => b.name).join(', ')}), seed ${o.seed}`);
    const results: CaseResult[] = [];
    // The budget counts cases only: building the bases takes the same few seconds on every run.
    const deadline = Date.now() + o.budget * 1000;
    let next = 0;
    const worker = async (w: number): Promise<void> => {
      while (Date.now() < deadline && next < o.cases) {
        const i = next++;
        const c = makeCase(o.seed, i, bases, files);
        // Case files sit beside the bases, so a relative backing name still resolves.
        const r = await judgeCase(c.base, c, join(dir, `case-${w}`), i);
        results.push(r);
        if ((r.falseClaims.length > 0 || r.lostVsQemu > 0) && o.keep) {
          mkdirSync(o.keep, { recursive: true });
          const stem = join(o.keep, `seed${o.seed}-case${i}`);
          writeFileSync(`${stem}.qcow2`, c.bytes, { flag: 'wx' });
          writeFileSync(`${stem}.json`, `${JSON.stringify({ seed: o.seed, case: i, ...r }, null, 2)}\n`, {
            flag: 'wx',
          });
        }
      }
    };
    await Promise.all(Array.from({ length: o.jobs }, (_, w) => worker(w)));
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
