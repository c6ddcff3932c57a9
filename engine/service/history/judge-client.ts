// Judge a history in a worker thread: progress streams back, a cancel stops it between states, and
// past its time limit the worker is terminated even in the middle of one state. Without the
// compiled worker script (sources run before a build) the work runs here, between yields.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CancelledError } from '../../base/errors.js';
import type { CancelToken, ProgressSink } from '../../base/task-control.js';
import type { HistoryExplanation, HistoryStateVerdict } from '../../contract/history.js';
import { EXPLAIN_MS, explainJudged, type Judged, type JudgeInput, judgeStates } from './judge.js';
import type { JudgeReply, JudgeRequest } from './judge-protocol.js';
import type { JudgedState } from './store.js';

/** Time past its own budget a worker gets before it is terminated. */
const GRACE_MS = 15_000;

function workerScript(): URL | undefined {
  for (const rel of [
    './judge-worker.js',
    '../../../dist/engine/service/history/judge-worker.js',
    './history-judge-worker.js',
  ]) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u;
  }
  return undefined;
}

interface Steering {
  cancel: CancelToken;
  progress: ProgressSink;
}

function inWorker<T>(script: URL, req: JudgeRequest, limitMs: number, s: Steering): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(script, { workerData: req, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
      void worker.terminate();
    };
    const timer = setTimeout(
      () => settle(() => reject(new Error(`judging took longer than ${Math.round(limitMs / 1000)} s and was stopped`))),
      limitMs,
    );
    s.cancel.onCancel(() => {
      worker.postMessage({ type: 'cancel' });
      // A state that never looks at the token still ends: the worker goes.
      setTimeout(() => settle(() => reject(new CancelledError())), 2000);
    });
    worker.on('message', (m: JudgeReply) => {
      if (m.type === 'progress') s.progress(m.progress);
      else if (m.type === 'error') settle(() => reject(m.cancelled ? new CancelledError() : new Error(m.message)));
      else settle(() => resolve(m.result as T));
    });
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`the judging worker stopped (exit code ${code})`))));
  });
}

export function judgeInWorker(input: JudgeInput, budgetSeconds: number, seed: number, s: Steering): Promise<Judged> {
  const script = workerScript();
  if (!script) return judgeStates(input, { budgetSeconds, seed, ...s });
  return inWorker(script, { op: 'judge', input, budgetSeconds, seed }, budgetSeconds * 1000 + GRACE_MS, s);
}

export function explainInWorker(
  input: JudgeInput,
  state: JudgedState,
  verdict: HistoryStateVerdict,
  s: Steering,
): Promise<HistoryExplanation> {
  const script = workerScript();
  if (!script) return explainJudged(input, state, verdict, s.cancel);
  return inWorker(script, { op: 'explain', input, state, verdict }, EXPLAIN_MS + GRACE_MS, s);
}
