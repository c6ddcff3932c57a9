// Run a check in a worker thread so a long check never blocks the caller (the app's engine host,
// the service). Progress and QEMU's lines stream back; `opts.cancel` stops the worker between
// batches; errors come back as the same typed errors checkFile throws.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CancelledError, Qcow2FormatError } from '../base/errors.js';
import type { CheckOptions, CheckResult } from './types.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

/** The compiled worker script (next to this file once built; from dist/ when running sources). */
function workerScript(): URL {
  const here = new URL('./check-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL('../../dist/engine/check/check-worker.js', import.meta.url);
}

/**
 * `timeoutMs`: the time budget; past it the worker is terminated (even mid-way through a
 * synchronous step that never looks at the cancel token) and the check fails with that said.
 */
export function checkInWorker(
  path: string,
  opts: CheckOptions & { timeoutMs?: number; wantReferences?: boolean } = {},
): Promise<CheckResult & { references?: Uint8Array }> {
  const req: WorkerRequest = {
    wantReferences: !!opts.wantReferences,
    path,
    roleMap: opts.roleMap,
    guestMap: opts.guestMap,
    wantMessages: !!opts.onMessage,
    wantProgress: !!opts.onProgress,
  };
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerScript(), { workerData: req });
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      fn();
      void worker.terminate();
    };
    opts.cancel?.onCancel(() => worker.postMessage({ type: 'cancel' }));
    const budget =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(
            () =>
              settle(() =>
                reject(
                  new Error(`the check took longer than its budget of ${opts.timeoutMs! / 1000} s and was stopped`),
                ),
              ),
            opts.timeoutMs,
          );
    worker.once('exit', () => clearTimeout(budget));
    worker.on('message', (m: WorkerReply) => {
      switch (m.type) {
        case 'lines':
          for (const l of m.lines) opts.onMessage?.(l);
          break;
        case 'progress':
          opts.onProgress?.(m.progress);
          break;
        case 'result':
          settle(() => resolve(m.references ? Object.assign(m.result, { references: m.references }) : m.result));
          break;
        case 'error':
          settle(() =>
            reject(
              m.kind === 'format'
                ? new Qcow2FormatError(m.qemuReason!, m.field!, m.value!)
                : m.kind === 'cancelled'
                  ? new CancelledError()
                  : new Error(m.message),
            ),
          );
          break;
      }
    });
    worker.on('error', (e) => settle(() => reject(e)));
    worker.on('exit', (code) => settle(() => reject(new Error(`check worker exited with code ${code}`))));
  });
}
