/**
 * The app's state (Svelte 5 runes) and the actions every view uses: open an image, run the
 * check with progress and cancel, load the maps, report errors without leaving a broken screen.
 */
import type {
  Anomaly,
  AnomalyRanges,
  CheckSummary,
  FileRef,
  GuestMap,
  Hello,
  HostMap,
  Method,
  ArgsOf,
  OpenedImage,
  ResultOf,
} from '../../../engine/contract/contract.js';
import { ContractError } from '../../../engine/contract/contract.js';
import { connect, type Client } from '../client/client.js';

/** Milestones of the last open (performance.now() ms; engineCheck in s), read by the bench. */
export const timings: Record<string, number> = ((globalThis as { __q2dTimings?: Record<string, number> }).__q2dTimings =
  {});

export interface Job {
  label: string;
  fraction: number;
  stage: string;
  controller: AbortController;
  /** performance.now() at the start, and the bytes the job goes over: for the rate and time left. */
  started: number;
  total?: number;
}

class AppState {
  client: Client;
  host: 'electron' | 'browser';
  hello = $state<Hello | null>(null);
  image = $state<OpenedImage | null>(null);
  check = $state<CheckSummary | null>(null);
  hostMap = $state.raw<HostMap | null>(null);
  guestMap = $state.raw<GuestMap | null>(null);
  anomalyRanges = $state.raw<AnomalyRanges | null>(null);
  /** The check's lost tables (they decide the verdict: QEMU counts them as leaks, yet data is at risk). */
  lostTables = $state.raw<Anomaly[]>([]);
  job = $state<Job | null>(null);
  error = $state<string | null>(null);
  /** The last open was refused but salvage can read the file: offered next to the error. */
  salvageOffer = $state<{ handle: string; name: string; reason: string } | null>(null);
  notice = $state<string | null>(null);
  view = $state('files');
  /** Host cluster to show in the host map (set by the guest map's "show in host file"). */
  focusHostCluster = $state<number | null>(null);
  connected = $state(false);

  constructor() {
    const c = connect();
    this.client = c.client;
    this.host = c.host;
    this.client.onNotice((n) => {
      if (n.kind === 'open') void this.open(n.ref);
      else if (n.kind === 'opened') void this.adopt(n.image);
      else if (n.kind === 'error') this.error = n.error.message;
      else if (n.kind === 'menu') {
        if (n.command === 'open') void this.open({ kind: 'dialog' });
        else if (n.command === 'close') void this.closeImage();
        else if (n.command === 'view' && n.view) this.view = n.view;
      }
    });
  }

  async start(): Promise<void> {
    try {
      await this.client.ready;
      this.connected = true;
      this.hello = await this.client.call('app.hello', {});
    } catch (e) {
      this.fail(e);
    }
  }

  /** A call whose error is shown to the user (and rethrown as undefined). */
  async call<M extends Method>(method: M, args: ArgsOf<M>): Promise<ResultOf<M> | undefined> {
    try {
      return await this.client.call(method, args);
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  fail(e: unknown): void {
    if (e instanceof ContractError && e.code === 'cancelled') {
      this.notice = 'Cancelled.';
      return;
    }
    this.error = e instanceof Error ? e.message : String(e);
  }

  async open(ref: FileRef): Promise<void> {
    for (const k of Object.keys(timings)) delete timings[k];
    timings.openStart = performance.now();
    this.error = null;
    this.notice = null;
    this.salvageOffer = null;
    try {
      const opened = await this.client.call('image.open', { ref });
      await this.adopt(opened);
    } catch (e) {
      // The dialog was dismissed: not an error.
      if (e instanceof ContractError && e.code === 'cancelled' && ref.kind === 'dialog') return;
      if (e instanceof ContractError && e.salvageSource !== undefined)
        this.salvageOffer = { handle: e.salvageSource, name: e.salvageName ?? 'the chosen image', reason: e.message };
      this.fail(e);
    }
  }

  private async adopt(opened: OpenedImage): Promise<void> {
    const previous = this.image;
    this.image = opened;
    this.check = null;
    this.hostMap = null;
    this.guestMap = null;
    this.anomalyRanges = null;
    this.lostTables = [];
    this.focusHostCluster = null;
    this.view = 'overview';
    if (previous && previous.handle !== opened.handle)
      void this.client.call('image.close', { handle: previous.handle }).catch(() => undefined);
    await this.runCheck();
  }

  async runCheck(): Promise<void> {
    const image = this.image;
    if (!image || this.job) return;
    const controller = new AbortController();
    this.job = {
      label: `Checking ${image.name}`,
      fraction: 0,
      stage: 'starting',
      controller,
      started: performance.now(),
      total: image.overview.fileSize,
    };
    try {
      const check = await this.client.call(
        'check.run',
        { handle: image.handle },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (this.job) {
              this.job.fraction = p.fraction;
              this.job.stage = p.stage;
            }
          },
        },
      );
      if (this.image?.handle !== image.handle) return;
      timings.checkDone = performance.now();
      timings.engineCheck = check.elapsed;
      // The guest map is fetched when its view is first shown (loadGuestMap): the host map paints sooner.
      const [hostMap, ranges, lost] = await Promise.all([
        this.client.call('map.host', { handle: image.handle }),
        this.client.call('anomalies.ranges', { handle: image.handle }),
        this.lostTablesOf(image.handle),
      ]);
      timings.mapsLoaded = performance.now();
      this.hostMap = hostMap;
      this.anomalyRanges = ranges;
      this.lostTables = lost;
      this.check = check;
    } catch (e) {
      this.fail(e);
    } finally {
      this.job = null;
    }
  }

  /** The 'lost-table' findings of the image's last check. */
  async lostTablesOf(handle: string): Promise<Anomaly[]> {
    return (await this.client.call('anomalies.list', { handle, kind: 'lost-table', limit: 1000 })).items;
  }

  /** Fetch the guest map once per check (the guest view calls this when shown). */
  async loadGuestMap(): Promise<void> {
    const image = this.image;
    if (!image || !this.check || this.guestMap) return;
    try {
      const g = await this.client.call('map.guest', { handle: image.handle });
      if (this.image?.handle === image.handle) this.guestMap = g;
    } catch (e) {
      this.fail(e);
    }
  }

  cancelJob(): void {
    this.job?.controller.abort();
  }

  async closeImage(): Promise<void> {
    const img = this.image;
    if (!img) return;
    this.cancelJob();
    this.image = null;
    this.check = null;
    this.hostMap = null;
    this.guestMap = null;
    this.anomalyRanges = null;
    this.lostTables = [];
    this.view = 'files';
    await this.client.call('image.close', { handle: img.handle }).catch(() => undefined);
  }
}

export const app = new AppState();
