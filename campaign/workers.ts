// The orchestrator's side of a campaign worker (worker.ts): start one, send it a case, get the
// verdict back, or learn that it died (crashed, hung past its limit, or was stopped).
import { type ChildProcess, fork } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CaseResult } from './judge.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { repoRoot } from './tools.js';

const mtime = (f: string): number => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? -1;

/**
 * The compiled worker script. Run from sources (the test), the campaign's modules in dist/ must be
 * as new as campaign/*.ts, or the cases would be judged by an older judge.
 */
export function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return join(dirname(here), 'worker.js');
  const dist = join(repoRoot(), 'dist', 'campaign');
  for (const f of readdirSync(dirname(here)).filter((n) => n.endsWith('.ts'))) {
    const js = join(dist, `${basename(f, '.ts')}.js`);
    if (mtime(js) < mtime(join(dirname(here), f)))
      throw new Error(`campaign: ${js} is missing or older than campaign/${f} (run npm run build:cli)`);
  }
  return join(dist, 'worker.js');
}

export interface Started {
  index: number;
  base: string;
  kind: string;
  what: string;
}

/** A case's outcome: its verdict, or 'died' (the worker is gone; `started` names the case when known). */
export type Outcome = { result: CaseResult } | { died: string; started?: Started };

export class CampaignWorker {
  /** Resident memory after the last case (bytes). */
  rss = 0;
  private waiting?: (m: FromWorker | { type: 'exit'; why: string }) => void;
  private started?: Started;
  private exited?: string;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: FromWorker) => {
      if (m.type === 'started') this.started = m;
      else this.waiting?.(m);
    });
    child.on('exit', (code, signal) => {
      this.exited = `the worker exited (${signal ?? `code ${code}`})`;
      this.waiting?.({ type: 'exit', why: this.exited });
    });
    // A crash's message (the worker's own stderr; our CLI's output is captured, not printed).
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
    child.stdout?.resume();
  }

  static async start(init: ToWorker & { type: 'init' }): Promise<CampaignWorker> {
    const w = new CampaignWorker(fork(workerScript(), [], { silent: true, serialization: 'advanced' }));
    const m = await w.ask(init, 300_000);
    if (m.type !== 'ready') {
      w.kill();
      throw new Error(`campaign worker did not start: ${'message' in m ? m.message : 'why' in m ? m.why : m.type}`);
    }
    return w;
  }

  /** Judge case `index`; a worker that dies or passes `limitMs` is killed and the case reported as died. */
  async run(index: number, inProcess: boolean, limitMs: number): Promise<Outcome> {
    this.started = undefined;
    const m = await this.ask({ type: 'case', index, inProcess }, limitMs);
    if (m.type === 'result') {
      this.rss = m.rss;
      return { result: m.result };
    }
    if (m.type === 'error') throw new Error(`campaign case ${index}: ${m.message}`);
    this.kill();
    return { died: 'why' in m ? m.why : m.type, started: this.started };
  }

  kill(): void {
    if (this.exited === undefined && this.child.exitCode === null) this.child.kill('SIGKILL');
  }

  /** Let an idle worker end on its own (closing its channel ends it), or kill it if it lingers. */
  close(): void {
    if (this.exited !== undefined || !this.child.connected) {
      this.kill();
      return;
    }
    this.child.disconnect();
    setTimeout(() => this.kill(), 5000).unref();
  }

  private ask(m: ToWorker, limitMs: number): Promise<FromWorker | { type: 'exit'; why: string }> {
    return new Promise((resolve) => {
      if (this.exited !== undefined) return resolve({ type: 'exit', why: this.exited });
      const timer = setTimeout(() => {
        this.waiting = undefined;
        resolve({ type: 'exit', why: `no answer in ${limitMs / 1000} s` });
      }, limitMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(reply);
      };
      this.child.send(m);
    });
  }
}
