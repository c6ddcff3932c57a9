// The lab's seeded generator (mulberry32): the same seed gives the same campaign, case for case.
export { prng } from '../engine/lab/crash-states.js';

export type Prng = () => number;

export function pick<T>(rng: Prng, items: readonly T[]): T {
  if (items.length === 0) throw new Error('pick from an empty list');
  return items[Math.floor(rng() * items.length)]!;
}

export function int(rng: Prng, below: number): number {
  return Math.floor(rng() * below);
}
