// What the timeline strip draws, computed from the history and its judgement (no DOM): per entry
// the most telling role it touches, per prefix the verdict of the state after it, per flush epoch
// the worst verdict of its reordered and torn states.
import type {
  HistoryEntry,
  HistoryJudgement,
  HistoryStateVerdict,
  StateVerdictWord,
} from '../../../../engine/contract/contract.js';
import { HOST_PALETTE } from '../../map/palette.js';

export const VERDICT_COLORS: Record<StateVerdictWord, string> = {
  consistent: '#2e9e5b',
  leaky: '#e0a020',
  corrupt: '#e5393e',
};
export const NOT_JUDGED = '#3a3f47';
const RANK: Record<StateVerdictWord, number> = { consistent: 0, leaky: 1, corrupt: 2 };

/** The role an entry is drawn with: the most telling one it touches (damage, then metadata, then data). */
export function entryRole(e: HistoryEntry): number | null {
  let best: number | null = null;
  for (const r of e.touched)
    if (best === null || HOST_PALETTE.priority.indexOf(r.role) < HOST_PALETTE.priority.indexOf(best)) best = r.role;
  return best;
}

export const worse = (a: HistoryStateVerdict | undefined, b: HistoryStateVerdict): HistoryStateVerdict =>
  !a || RANK[b.verdict] > RANK[a.verdict] ? b : a;

export interface Strips {
  /** Verdict of the prefix state with p entries (index p). */
  prefix: Array<HistoryStateVerdict | undefined>;
  /** Worst reordered/torn state per epoch. */
  epoch: Map<number, HistoryStateVerdict>;
  /** First and last entry index per epoch. */
  epochSpan: Map<number, [number, number]>;
}

export function strips(entries: HistoryEntry[], j: HistoryJudgement | null): Strips {
  const out: Strips = { prefix: [], epoch: new Map(), epochSpan: new Map() };
  for (const e of entries) {
    const span = out.epochSpan.get(e.epoch);
    out.epochSpan.set(e.epoch, span ? [span[0], e.index] : [e.index, e.index]);
  }
  for (const s of j?.states ?? []) {
    if (s.kind === 'prefix') out.prefix[s.crashAt] = s;
    else out.epoch.set(s.epoch, worse(out.epoch.get(s.epoch), s));
  }
  return out;
}

/** Failing states, worst first then in timeline order, at most `max`. */
export function failing(j: HistoryJudgement | null, max = 200): HistoryStateVerdict[] {
  return (j?.states ?? [])
    .filter((s) => s.verdict !== 'consistent')
    .sort((a, b) => RANK[b.verdict] - RANK[a.verdict] || a.crashAt - b.crashAt || a.id - b.id)
    .slice(0, max);
}
