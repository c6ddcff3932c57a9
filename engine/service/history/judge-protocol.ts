// Messages between judge-client.ts and judge-worker.ts.
import type { HistoryExplanation, HistoryStateVerdict } from '../../contract/history.js';
import type { ProgressEvent } from '../../base/task-control.js';
import type { Judged, JudgeInput } from './judge.js';
import type { JudgedState } from './store.js';

export type JudgeRequest =
  | { op: 'judge'; input: JudgeInput; budgetSeconds: number; seed: number }
  | { op: 'explain'; input: JudgeInput; state: JudgedState; verdict: HistoryStateVerdict };

export type JudgeReply =
  | { type: 'progress'; progress: ProgressEvent }
  | { type: 'judged'; result: Judged }
  | { type: 'explained'; result: HistoryExplanation }
  | { type: 'error'; cancelled: boolean; message: string };
