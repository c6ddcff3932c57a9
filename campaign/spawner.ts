// The programs a campaign worker runs (qemu-img, and our CLI when a case is judged the slow way)
// are started from this small process instead of from the worker: starting a program forks the
// process that starts it, and forking a worker of a few hundred MiB cost ~40 ms a program.
// Run as a child of the worker; exits when the worker does.
import type { Ran } from './tools.js';
import { startHere } from './tools.js';

interface Request {
  id: number;
  cmd: string;
  args: string[];
  timeoutMs: number;
}

process.on('SIGINT', () => {});
process.on('message', (m: Request) => {
  void startHere(m.cmd, m.args, m.timeoutMs).then((r: Ran) => {
    // The worker may be gone (stopped mid-case): then nobody wants the answer.
    if (process.connected) process.send?.({ id: m.id, r });
  });
});
