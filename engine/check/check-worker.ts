// Worker-thread entry for long checks (see worker-client.ts): runs checkFile off the caller's
// thread, streams progress and QEMU's lines back, and stops between batches when told to cancel.
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError, Qcow2FormatError } from '../base/errors.js';
import { CancelToken } from '../base/task-control.js';
import { checkFile } from './run.js';
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

async function main(): Promise<void> {
  try {
    const result = await checkFile(req.path, {
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
    port.postMessage({ type: 'result', result } satisfies WorkerReply, transfer);
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
