// What the campaign's orchestrator (campaign.ts) and its workers (worker.ts) say to each other.
import type { Base } from './bases.js';
import type { CaseResult, Scratch } from './judge.js';

/** A base as a worker receives it: its truth is read back from `truthFile`. */
export type BaseManifest = Omit<Base, 'truth'>;

export type ToWorker =
  | { type: 'init'; seed: number; bases: BaseManifest[]; scratch: Scratch; keep?: string }
  /** `inProcess`: run our CLI inside the worker; otherwise a process per command (the slow, isolated way). */
  | { type: 'case'; index: number; inProcess: boolean };

export type FromWorker =
  | { type: 'ready' }
  /** Sent before judging, so a case whose worker dies can still be named. */
  | { type: 'started'; index: number; base: string; kind: string; what: string }
  | { type: 'result'; result: CaseResult; rss: number }
  | { type: 'error'; message: string };
