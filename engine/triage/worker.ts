// Worker-thread entry for triage: checks the images it is sent, one at a time, and posts rows back.
import { parentPort } from 'node:worker_threads';
import { triageImage } from './triage-image.js';

export interface TriageWorkerRequest {
  id: number;
  path: string;
  /** Ask the parent before opening a backing file (it holds the confinement rules). */
  confined?: boolean;
}

/** The parent's answer to a MayReadQuestion. */
export interface MayReadAnswer {
  mayReadId: number;
  allowed: boolean;
}

export interface MayReadQuestion {
  mayReadId: number;
  path: string;
}

export interface TriageWorkerReply {
  id: number;
  row: Awaited<ReturnType<typeof triageImage>>;
}

let questions = 0;
const pending = new Map<number, (allowed: boolean) => void>();

function askParent(path: string): Promise<boolean> {
  const mayReadId = ++questions;
  return new Promise((resolve) => {
    pending.set(mayReadId, resolve);
    parentPort!.postMessage({ mayReadId, path } satisfies MayReadQuestion);
  });
}

parentPort?.on('message', (msg: TriageWorkerRequest | MayReadAnswer) => {
  if ('mayReadId' in msg) {
    pending.get(msg.mayReadId)?.(msg.allowed);
    pending.delete(msg.mayReadId);
    return;
  }
  void triageImage(msg.path, undefined, msg.confined ? askParent : undefined).then((row) =>
    parentPort!.postMessage({ id: msg.id, row } satisfies TriageWorkerReply),
  );
});
