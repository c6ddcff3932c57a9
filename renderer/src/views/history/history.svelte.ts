/**
 * The write-history view's state: the opened history, the scrub position (entries applied), the
 * cluster map at that position, the judgement of crash states and the explained state. Kept for
 * the session like the triage results.
 */
import type {
  FileEntry,
  HistoryExplanation,
  HistoryJudgement,
  HistoryOpened,
  HistoryState,
  HistoryStateVerdict,
} from '../../../../engine/contract/contract.js';
import { app } from '../../state/app.svelte.js';

export interface HistoryJob {
  label: string;
  fraction: number;
  stage: string;
  started: number;
  controller: AbortController;
}

class HistoryView {
  opened = $state.raw<HistoryOpened | null>(null);
  /** Entries applied: 0 is the base image, entries.length the image at the end of the log. */
  position = $state(0);
  map = $state.raw<HistoryState | null>(null);
  judgement = $state.raw<HistoryJudgement | null>(null);
  explained = $state.raw<HistoryExplanation | null>(null);
  selectedState = $state<number | null>(null);
  job = $state<HistoryJob | null>(null);
  files = $state.raw<FileEntry[]>([]);
  workloads = $state.raw<string[]>([]);
  logPath = $state('');
  basePath = $state('');
  workload = $state('');
  budget = $state(20);
  private mapRequest = 0;

  get total(): number {
    return this.opened?.entries.length ?? 0;
  }

  async loadChoices(): Promise<void> {
    if (app.host === 'browser') {
      const l = await app.call('files.list', {});
      if (l) {
        this.files = l.entries.filter((e) => e.kind === 'file');
        this.basePath ||= this.files.find((f) => f.qcow2)?.path ?? '';
        this.logPath ||= this.files.find((f) => !f.qcow2)?.path ?? '';
      }
    }
    this.workloads = (await app.call('history.workloads', {})) ?? [];
    this.workload ||= this.workloads[0] ?? '';
  }

  private async run<T>(
    label: string,
    work: (signal: AbortSignal, onProgress: (p: { fraction: number; stage: string }) => void) => Promise<T>,
  ): Promise<T | undefined> {
    const controller = new AbortController();
    this.job = { label, fraction: 0, stage: 'starting', started: performance.now(), controller };
    try {
      return await work(controller.signal, (p) => {
        if (this.job) {
          this.job.fraction = p.fraction;
          this.job.stage = p.stage;
        }
      });
    } catch (e) {
      app.fail(e);
      return undefined;
    } finally {
      this.job = null;
    }
  }

  async open(): Promise<void> {
    const refs =
      app.host === 'browser'
        ? { log: { kind: 'root' as const, path: this.logPath }, base: { kind: 'root' as const, path: this.basePath } }
        : { log: { kind: 'dialog' as const }, base: { kind: 'dialog' as const } };
    const h = await this.run('Reading the log', (signal, onProgress) =>
      app.client.call('history.open', refs, { signal, onProgress }),
    );
    if (h) await this.adopt(h);
  }

  async record(): Promise<void> {
    const h = await this.run(`Recording the ${this.workload} workload`, (signal, onProgress) =>
      app.client.call('history.record', { workload: this.workload }, { signal, onProgress }),
    );
    if (h) await this.adopt(h);
  }

  private async adopt(h: HistoryOpened): Promise<void> {
    if (this.opened) void app.call('history.close', { handle: this.opened.handle });
    this.opened = h;
    this.judgement = null;
    this.explained = null;
    this.selectedState = null;
    this.map = null;
    await this.seek(h.entries.length);
  }

  /** Move the scrubber to `p` entries applied and load the map there (the last request wins). */
  async seek(p: number): Promise<void> {
    if (!this.opened) return;
    const to = Math.max(0, Math.min(this.total, Math.round(p)));
    this.position = to;
    const mine = ++this.mapRequest;
    const s = await app.call('history.stateAt', { handle: this.opened.handle, prefix: to });
    if (s && mine === this.mapRequest) this.map = s;
  }

  /** The next (dir 1) or previous (dir -1) position just after a flush. */
  flushStop(dir: 1 | -1): number {
    const entries = this.opened?.entries ?? [];
    for (let p = this.position + dir; p > 0 && p < this.total; p += dir) if (entries[p - 1]?.kind === 'flush') return p;
    return dir > 0 ? this.total : 0;
  }

  async judge(): Promise<void> {
    const h = this.opened;
    if (!h) return;
    const j = await this.run('Judging crash states', (signal, onProgress) =>
      app.client.call('history.judge', { handle: h.handle, budget: this.budget }, { signal, onProgress }),
    );
    if (j) {
      this.judgement = j;
      this.explained = null;
      this.selectedState = null;
    }
  }

  async explain(s: HistoryStateVerdict): Promise<void> {
    const h = this.opened;
    if (!h) return;
    this.selectedState = s.id;
    this.explained = null;
    void this.seek(s.crashAt);
    const x = await this.run('Finding the entries that cause it', (signal, onProgress) =>
      app.client.call('history.explain', { handle: h.handle, state: s.id }, { signal, onProgress }),
    );
    if (x && this.selectedState === s.id) this.explained = x;
  }

  async close(): Promise<void> {
    if (this.opened) await app.call('history.close', { handle: this.opened.handle });
    this.opened = null;
    this.map = null;
    this.judgement = null;
    this.explained = null;
  }
}

export const history = new HistoryView();
