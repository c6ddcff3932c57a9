// Case `i` of a seed: which base, which damage, which bytes. Pure: the same seed and number give
// the same case in any process (the campaign's workers make their cases themselves).
import type { Base } from './bases.js';
import { DAMAGE_KINDS, type Damage, damage } from './damage.js';
import { pick, prng } from './prng.js';

export type Case = Damage & { base: Base };

export function makeCase(seed: number, i: number, bases: Base[], files: Map<Base, Uint8Array>): Case {
  const rng = prng(seed * 1_000_003 + i);
  for (let tries = 0; tries < 20; tries++) {
    const base = pick(rng, bases);
    const kind = pick(rng, DAMAGE_KINDS);
    const d = damage(rng, base, files.get(base)!, kind);
    if (d) return { ...d, base };
  }
  throw new Error(`case ${i}: no damage could be aimed`);
}
