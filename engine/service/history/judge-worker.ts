// Worker-thread entry for judging a history's crash states (see judge-client.ts): a hostile log
// can only slow its own request, never the thread that answers every client.
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError } from '../../base/errors.js';
import { CancelToken } from '../../base/task-control.js';
import { explainJudged, judgeStates } from './judge.js';
import type { JudgeReply, JudgeRequest } from './judge-protocol.js';

const port = parentPort!;
const req = workerData as JudgeRequest;
const cancel = new CancelToken();
port.on('message', (m: { type: string }) => {
  if (m.type === 'cancel') cancel.cancel();
});
const send = (m: JudgeReply): void => port.postMessage(m);

try {
  if (req.op === 'judge') {
    const result = await judgeStates(req.input, {
      budgetSeconds: req.budgetSeconds,
      seed: req.seed,
      cancel,
      progress: (progress) => send({ type: 'progress', progress }),
    });
    send({ type: 'judged', result });
  } else {
    send({ type: 'explained', result: await explainJudged(req.input, req.state, req.verdict, cancel) });
  }
} catch (e) {
  send({ type: 'error', cancelled: e instanceof CancelledError, message: e instanceof Error ? e.message : String(e) });
}
