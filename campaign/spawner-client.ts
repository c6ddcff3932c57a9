// The worker's side of its spawner (spawner.ts): programs started there, their results sent back.
// Should the spawner die, what it was running is started again from here.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Ran, type Starter, startHere } from './tools.js';

interface Pending {
  cmd: string;
  args: string[];
  timeoutMs: number;
  resolve: (r: Ran) => void;
}

export function spawnerStarter(): { start: Starter; close: () => void } {
  let child: ChildProcess | undefined;
  let nextId = 0;
  const pending = new Map<number, Pending>();
  const open = (): ChildProcess => {
    const c = fork(fileURLToPath(new URL('./spawner.js', import.meta.url)), [], { stdio: 'inherit' });
    c.on('message', (m: { id: number; r: Ran }) => {
      pending.get(m.id)?.resolve(m.r);
      pending.delete(m.id);
    });
    c.on('exit', () => {
      if (child === c) child = undefined;
      for (const [id, p] of pending) {
        pending.delete(id);
        void startHere(p.cmd, p.args, p.timeoutMs).then(p.resolve);
      }
    });
    return c;
  };
  const start: Starter = (cmd, args, timeoutMs) =>
    new Promise((resolve) => {
      child ??= open();
      const id = nextId++;
      pending.set(id, { cmd, args, timeoutMs, resolve });
      child.send({ id, cmd, args, timeoutMs });
    });
  const close = (): void => {
    if (child?.connected) child.disconnect();
  };
  return { start, close };
}
