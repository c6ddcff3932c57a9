// Check many images with a bounded number at once, each in a worker thread so that checks run on
// separate cores and a runaway check can be stopped (timeout, cancel) without stopping the others.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CancelledError } from '../base/errors.js';
import type { CancelToken } from '../base/task-control.js';
import { triageImage } from './triage-image.js';
import { VERDICT_EXIT, type ImageTriage } from './types.js';
import type { MayReadAnswer, MayReadQuestion, TriageWorkerReply } from './worker.js';
import type { MayRead } from '../image/backing-chain.js';

export interface TriageOptions {
  /** Images checked at once (default 2). */
  concurrency?: number;
  /** Give up on one image after this many seconds (0 or absent: no limit). */
  timeoutSeconds?: number;
  /** Called as each image finishes, with its position in `files`. */
  onRow?: (row: ImageTriage, index: number) => void;
  cancel?: CancelToken;
  /** Check in this thread instead of worker threads. */
  inProcess?: boolean;
  /** Backing files are opened only where this allows (serve: inside its root). */
  mayRead?: MayRead;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

export async function triageFiles(files: readonly string[], opts: TriageOptions = {}): Promise<ImageTriage[]> {
  const rows: ImageTriage[] = new Array(files.length);
  // Worker threads need the compiled worker next to this module (dist/); from sources (tests
  // through a TS loader) checks run in this thread instead.
  const useWorkers = !opts.inProcess && existsSync(fileURLToPath(WORKER_URL));
  const slots = Math.max(1, Math.min(opts.concurrency ?? 2, files.length));
  let next = 0;
  let id = 0;

  const slot = async (): Promise<void> => {
    let worker: Worker | undefined;
    try {
      while (next < files.length) {
        opts.cancel?.throwIfCancelled();
        const index = next++;
        const path = files[index]!;
        let row: ImageTriage;
        if (!useWorkers) {
          row = await triageImage(path, opts.cancel, opts.mayRead);
        } else {
          worker ??= new Worker(WORKER_URL);
          const outcome = await runInWorker(worker, ++id, path, opts);
          row = outcome.row;
          if (outcome.discard) {
            await worker.terminate();
            worker = undefined;
          }
        }
        opts.cancel?.throwIfCancelled();
        rows[index] = row;
        opts.onRow?.(row, index);
      }
    } finally {
      if (worker) await worker.terminate();
    }
  };
  await Promise.all(Array.from({ length: slots }, slot));
  return rows;
}

function failedRow(path: string, error: string, elapsed: number): ImageTriage {
  return {
    path,
    verdict: 'unreadable',
    exitCode: VERDICT_EXIT.unreadable,
    error,
    fileSize: 0,
    backingChain: [],
    findings: {},
    elapsed,
  };
}

/** Run one image on `worker`; `discard` when the worker must not be reused (timed out, crashed). */
function runInWorker(
  worker: Worker,
  id: number,
  path: string,
  opts: TriageOptions,
): Promise<{ row: ImageTriage; discard: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (timer) clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (m: TriageWorkerReply | MayReadQuestion): void => {
      if ('mayReadId' in m) {
        void Promise.resolve(opts.mayRead?.(m.path) ?? true)
          .catch(() => false)
          .then((allowed) => worker.postMessage({ mayReadId: m.mayReadId, allowed } satisfies MayReadAnswer));
        return;
      }
      if (m.id !== id) return;
      finish();
      resolve({ row: m.row, discard: false });
    };
    const onError = (err: Error): void => {
      finish();
      resolve({
        row: failedRow(path, `internal error while checking: ${err.message}`, (performance.now() - t0) / 1000),
        discard: true,
      });
    };
    const onExit = (): void => {
      finish();
      if (opts.cancel?.isCancelled) reject(new CancelledError());
      else
        resolve({
          row: failedRow(path, 'internal error while checking: the checker stopped', (performance.now() - t0) / 1000),
          discard: true,
        });
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    if (opts.timeoutSeconds && opts.timeoutSeconds > 0) {
      timer = setTimeout(() => {
        finish();
        resolve({
          row: failedRow(path, `the check did not finish within ${opts.timeoutSeconds} s`, opts.timeoutSeconds!),
          discard: true,
        });
      }, opts.timeoutSeconds * 1000);
    }
    opts.cancel?.onCancel(() => void worker.terminate());
    worker.postMessage({ id, path, confined: opts.mayRead !== undefined });
  });
}
