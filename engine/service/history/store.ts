// Opened write histories, each behind an opaque random handle, kept per service (next to its
// image sessions). A history holds its base image and its whole log in memory, so few stay open.
import { ContractError } from '../../contract/errors.js';
import type { HistoryEntry, HistoryJudgement, HistoryState } from '../../contract/history.js';
import type { WriteLogEntry } from '../../io/recording-io.js';
import type { CrashState, CrashStateBuilder } from '../../lab/crash-states.js';
import { randomHandle, type Sessions } from '../session.js';

/** Histories open at once per service; the oldest is closed to make room. */
export const MAX_HISTORIES = 3;
/** Cluster maps kept per history (scrubbing back and forth costs nothing the second time). */
const STATE_CACHE = 48;

export type Lane = 'maps' | 'judge';

export interface JudgedState {
  state: CrashState;
  details: string[];
}

export interface History {
  handle: string;
  name: string;
  baseName: string;
  sectorSize: number;
  clusterSize: number;
  base: Uint8Array;
  log: WriteLogEntry[];
  /** For each log item, the dm-log-writes entry it came from. */
  source: number[];
  entries: HistoryEntry[];
  rolesNote: string;
  builder: CrashStateBuilder;
  states: Map<number, HistoryState>;
  /** The last judgement, and what each of its states was (for history.explain). */
  judgement?: HistoryJudgement;
  judged?: JudgedState[];
  /** One request at a time per lane: scrubbing (on `builder`) never waits for a judgement (in a worker). */
  busy: Record<Lane, Promise<unknown>>;
}

const stores = new WeakMap<Sessions, Map<string, History>>();

function storeOf(sessions: Sessions): Map<string, History> {
  let s = stores.get(sessions);
  if (!s) {
    s = new Map();
    stores.set(sessions, s);
  }
  return s;
}

export function addHistory(sessions: Sessions, h: Omit<History, 'handle' | 'states' | 'busy'>): History {
  const store = storeOf(sessions);
  while (store.size >= MAX_HISTORIES) {
    const oldest = store.keys().next().value;
    if (oldest === undefined) break;
    store.delete(oldest);
  }
  const full: History = {
    ...h,
    handle: randomHandle(),
    states: new Map(),
    busy: { maps: Promise.resolve(), judge: Promise.resolve() },
  };
  store.set(full.handle, full);
  return full;
}

export function getHistory(sessions: Sessions, handle: string): History {
  const h = storeOf(sessions).get(handle);
  if (!h)
    throw new ContractError('not-found', `no open history with handle ${handle}`, {
      field: 'args.handle',
      value: handle,
    });
  return h;
}

export function closeHistory(sessions: Sessions, handle: string): void {
  storeOf(sessions).delete(handle);
}

/** Run `job` on `h` after whatever runs in its lane now (a builder keeps state between calls). */
export function exclusive<T>(h: History, lane: Lane, job: () => Promise<T>): Promise<T> {
  const run = h.busy[lane].then(job, job);
  h.busy[lane] = run.catch(() => undefined);
  return run;
}

export function rememberState(h: History, s: HistoryState): void {
  if (h.states.size >= STATE_CACHE) {
    const oldest = h.states.keys().next().value;
    if (oldest !== undefined) h.states.delete(oldest);
  }
  h.states.set(s.prefix, s);
}
