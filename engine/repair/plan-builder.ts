/**
 * Collects the plan's writes phase by phase against a shadow of the image, so each write records
 * the bytes it replaces *at the moment it runs* (a region written in two phases shows both steps).
 */
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import { OverlayIO } from './overlay-io.js';
import { PHASES, type Phase, type PlanStep, type PlannedWrite, type Structure } from './plan.js';

export class PlanBuilder {
  private readonly shadow: OverlayIO;
  private readonly steps = new Map<Phase, PlanStep>();

  constructor(base: PositionalIO, baseLength: number) {
    this.shadow = new OverlayIO(base, baseLength);
  }

  private step(phase: Phase): PlanStep {
    let s = this.steps.get(phase);
    if (!s) this.steps.set(phase, (s = { phase, writes: [] }));
    return s;
  }

  /**
   * Add a write. Writes must be added in phase order (callers add phase by phase); a write whose
   * bytes equal what is already there is dropped.
   */
  async write(phase: Phase, offset: number, newBytes: Uint8Array, structure: Structure, why: string): Promise<void> {
    const oldBytes = await readPadded(this.shadow, offset, newBytes.length);
    if (equal(oldBytes, newBytes)) return;
    const w: PlannedWrite = { offset, structure, oldBytes, newBytes: newBytes.slice(), why };
    this.step(phase).writes.push(w);
    await this.shadow.write(offset, newBytes);
  }

  /**
   * Add the changed byte runs between `before` and `after` (same length, at `offset`) as writes;
   * runs closer than `gap` bytes are merged. Used for refcount blocks and tables, where a repair
   * usually changes a few entries of a large block.
   */
  async writeDiff(
    phase: Phase,
    offset: number,
    before: Uint8Array,
    after: Uint8Array,
    structure: Structure,
    why: string,
    gap = 16,
  ): Promise<number> {
    let i = 0;
    let n = 0;
    while (i < after.length) {
      if (before[i] === after[i]) {
        i++;
        continue;
      }
      let j = i + 1;
      let lastDiff = i;
      while (j < after.length && j - lastDiff <= gap) {
        if (before[j] !== after[j]) lastDiff = j;
        j++;
      }
      await this.write(phase, offset + i, after.subarray(i, lastDiff + 1), structure, why);
      n++;
      i = lastDiff + 1;
    }
    return n;
  }

  /** Current bytes of the shadow (the image as it will be after the writes added so far). */
  read(offset: number, length: number): Promise<Uint8Array> {
    return readPadded(this.shadow, offset, length);
  }

  steps_(): PlanStep[] {
    return PHASES.map((p) => this.steps.get(p)).filter((s): s is PlanStep => s !== undefined);
  }

  async finalLength(): Promise<number> {
    return this.shadow.size();
  }
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
