/**
 * The write-history part of the contract: a dm-log-writes log replayed onto its base image, shown as
 * a timeline of writes (the cluster map after any prefix, the clusters each write touches by role,
 * flush epochs) and the lab's verdict on the crash states along it. Pure TypeScript.
 */
import type { QemuCounters } from './findings.js';
import { obj, optional, str, uint, type Validator } from './validate.js';

/** Opaque handle of an opened history (random, never a path). */
const historyHandle = str({ max: 64, pattern: /^[A-Za-z0-9_-]{8,64}$/ });

/** Entries a history may hold (each is listed to the renderer). */
export const MAX_HISTORY_ENTRIES = 50_000;
/** Seconds one history.judge may run. */
export const MAX_JUDGE_BUDGET = 600;

/** Argument validators, merged into REQUESTS by contract.ts. `fileRef` is passed in to avoid an import cycle. */
export function historyRequests<R>(fileRef: Validator<R>) {
  return {
    /** A dm-log-writes log and the image file as it was when logging began (both FileRefs, confined). */
    'history.open': obj({ log: fileRef, base: fileRef }),
    /** Record one of the lab's own workloads (our writer) and open its log. */
    'history.record': obj({ workload: str({ max: 64, pattern: /^[a-z0-9-]{1,64}$/ }) }),
    /** The lab workloads history.record accepts. */
    'history.workloads': obj({}),
    /** The image after the first `prefix` entries (0 = the base image). */
    'history.stateAt': obj({ handle: historyHandle, prefix: uint(MAX_HISTORY_ENTRIES) }),
    /** Judge crash states along the timeline (progress + cancel), within `budget` seconds (default 20). */
    'history.judge': obj({
      handle: historyHandle,
      budget: optional(uint(MAX_JUDGE_BUDGET)),
      seed: optional(uint(2 ** 31)),
    }),
    /** What is wrong with judged state `state` and the fewest entries that still fail the same way. */
    'history.explain': obj({ handle: historyHandle, state: uint(1_000_000) }),
    'history.close': obj({ handle: historyHandle }),
  };
}

export type HistoryEntryKind = 'write' | 'zero' | 'discard' | 'flush' | 'truncate';

/** Host clusters an entry touches, as runs of one role (HostRole codes). */
export interface TouchedRun {
  first: number;
  count: number;
  role: number;
}

export interface HistoryEntry {
  /** Position in the timeline (0-based). */
  index: number;
  /** Number of the dm-log-writes entry it came from. */
  source: number;
  kind: HistoryEntryKind;
  /** Byte offset in the image file and length (0 for a flush; the new size for a truncate). */
  offset: number;
  length: number;
  /** Flush epoch: flushes completed before this entry. A flush belongs to the epoch it closes. */
  epoch: number;
  /** Host clusters touched, by the role they hold once the epoch is flushed (or at the end of the log). */
  touched: TouchedRun[];
  /** More clusters than listed in `touched`. */
  touchedTruncated?: boolean;
}

export interface HistoryOpened {
  handle: string;
  /** Display names of the log and its base. */
  name: string;
  baseName: string;
  sectorSize: number;
  clusterSize: number;
  entries: HistoryEntry[];
  flushes: number;
  epochs: number;
  /** How the roles of touched clusters were found (a sentence, shown in the view). */
  rolesNote: string;
}

export type StateVerdictWord = 'consistent' | 'leaky' | 'corrupt';

export interface HistoryStateVerdict {
  /** Number to pass to history.explain. */
  id: number;
  /** prefix: all issued entries landed in order; subset: some in-flight writes landed; torn: one landed partly. */
  kind: 'prefix' | 'subset' | 'torn';
  /** Entries [0, crashAt) were issued. */
  crashAt: number;
  /** Index of the last completed flush (-1: none). */
  lastFlush: number;
  epoch: number;
  /** In-flight entries that landed. */
  landed: number;
  verdict: StateVerdictWord;
  /** Guest sectors holding a value they never held at that point. */
  dataMismatches: number;
  /** One line: the first problem. */
  summary: string;
}

export interface HistoryJudgement {
  states: HistoryStateVerdict[];
  planned: number;
  judged: number;
  /** Every planned state was judged (the budget and cancel did not stop it). */
  complete: boolean;
  elapsed: number;
  counts: Record<StateVerdictWord, number>;
  /** Guest bytes compared per state. */
  guestCompared: number;
}

export interface HistoryExplanation {
  id: number;
  verdict: StateVerdictWord;
  /** The state in words: what is durable, what was in flight and landed. */
  description: string;
  /** Log entries in the state, as ranges ("0-11, 14"). */
  entries: string;
  problems: string[];
  /** The fewest in-flight entries that still fail the same way (timeline indices). */
  cause: number[];
  /** The same, described. */
  causeText: string[];
  /** The reduction finished within its time. */
  reduced: boolean;
}

export interface HistoryState {
  prefix: number;
  clusterSize: number;
  hostClusters: number;
  /** HostRole per host cluster of the image after `prefix` entries. */
  roles: Uint8Array;
  legend: number[];
  counters: QemuCounters;
  fileSize: number;
  /** Why the image cannot be read at this point (no roles then). */
  failed?: string;
}

export interface HistoryResults {
  'history.open': HistoryOpened;
  'history.record': HistoryOpened;
  'history.workloads': string[];
  'history.stateAt': HistoryState;
  'history.judge': HistoryJudgement;
  'history.explain': HistoryExplanation;
  'history.close': { ok: true };
}
