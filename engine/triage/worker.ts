// Worker-thread entry for triage: checks the images it is sent, one at a time, and posts rows back.
import { parentPort } from 'node:worker_threads';
import { triageImage } from './triage-image.js';

export interface WorkerRequest {
  id: number;
  path: string;
}

export interface WorkerReply {
  id: number;
  row: Awaited<ReturnType<typeof triageImage>>;
}

parentPort?.on('message', (req: WorkerRequest) => {
  void triageImage(req.path).then((row) => parentPort!.postMessage({ id: req.id, row } satisfies WorkerReply));
});
