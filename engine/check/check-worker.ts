// Worker-thread entry for long checks (see worker-client.ts): runs checkFile off the caller's
// thread, streams progress and QEMU's lines back, and stops between batches when told to cancel.
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError, Qcow2FormatError } from '../base/errors.js';
import { CancelToken } from '../base/task-control.js';
import { openInputFile } from '../io/input-file.js';
import { runCheckPasses } from './analyze.js';
import { openForCheck, toCheckResult } from './run.js';
import type { CheckOptions, CheckResult } from './types.js';
import type { WorkerReply, WorkerRequest } from './worker-protocol.js';

const port = parentPort!;
const req = workerData as WorkerRequest;
const cancel = new CancelToken();
port.on('message', (m: { type: string }) => {
  if (m.type === 'cancel') cancel.cancel();
});

let lines: string[] = [];
let lastFlush = 0;
const flushLines = (): void => {
  if (lines.length) port.postMessage({ type: 'lines', lines } satisfies WorkerReply);
  lines = [];
  lastFlush = Date.now();
};

/** checkFile, keeping the per-cluster reference counts when asked for them. */
async function checkWithReferences(
  path: string,
  opts: CheckOptions,
): Promise<{ result: CheckResult; references?: Uint8Array }> {
  const io = await openInputFile(path, { syncReads: true });
  try {
    const image = await openForCheck(io);
    const t0 = performance.now();
    const a = await runCheckPasses(image, opts);
    const result = toCheckResult(image.io.name, a, (performance.now() - t0) / 1000);
    return req.wantReferences ? { result, references: a.references } : { result };
  } finally {
    await io.close();
  }
}

async function main(): Promise<void> {
  try {
    const { result, references } = await checkWithReferences(req.path, {
      roleMap: req.roleMap,
      guestMap: req.guestMap,
      cancel,
      onMessage: req.wantMessages
        ? (l) => {
            lines.push(l);
            if (lines.length >= 1000 || Date.now() - lastFlush > 100) flushLines();
          }
        : undefined,
      onProgress: req.wantProgress
        ? (p) => port.postMessage({ type: 'progress', progress: p } satisfies WorkerReply)
        : undefined,
    });
    flushLines();
    const transfer: ArrayBuffer[] = [];
    if (result.roleMap) transfer.push(result.roleMap.buffer as ArrayBuffer);
    if (result.guestMap) transfer.push(result.guestMap.buffer as ArrayBuffer);
    if (references) transfer.push(references.buffer as ArrayBuffer);
    port.postMessage({ type: 'result', result, ...(references ? { references } : {}) } satisfies WorkerReply, transfer);
  } catch (e) {
    flushLines();
    const reply: WorkerReply =
      e instanceof Qcow2FormatError
        ? {
            type: 'error',
            kind: 'format',
            message: e.message,
            qemuReason: e.qemuReason,
            field: e.field,
            value: String(e.value),
          }
        : e instanceof CancelledError
          ? { type: 'error', kind: 'cancelled', message: e.message }
          : { type: 'error', kind: 'other', message: e instanceof Error ? e.message : String(e) };
    port.postMessage(reply);
  }
}

void main();
