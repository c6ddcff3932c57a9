/**
 * The recovery wizard's state and actions (Svelte 5 runes), kept outside the components so the
 * wizard survives switching to the map and back. Every step before "apply" can be gone back over;
 * nothing is written before the user confirms the exact plan.
 */
import type {
  Anomaly,
  AnomalyPage,
  CheckSummary,
  FileRef,
  LockStatus,
  OpenedImage,
  RepairApplyResult,
  RepairPlanResult,
  SalvageAssessment,
  SalvageExportResult,
  SalvagePreview,
  SalvageScanResult,
  SavedOutput,
  Severity,
  VerifyResult,
} from '../../../engine/contract/contract.js';
import { ContractError } from '../../../engine/contract/contract.js';
import { LOST_TABLES_ADVICE, plainVerdict, type PlainVerdict } from '../../../engine/contract/verdict.js';
import { kindTitle } from '../../../engine/contract/kind-titles.js';
import { app } from '../state/app.svelte.js';
import { bytes } from '../lib/format.js';

/** The leak group when some leaked clusters are lost tables or their data. */
const LEAKS_WITH_LOST_TABLES =
  'QEMU counts these clusters as leaked, but lost tables and the data they still map are among them: they are not only wasted space.';

export type Step = 'choose' | 'safety' | 'diagnose' | 'explain' | 'action' | 'preview' | 'apply' | 'verify' | 'report';
export const STEPS: Array<{ id: Step; title: string }> = [
  { id: 'choose', title: 'Choose' },
  { id: 'safety', title: 'Safety' },
  { id: 'diagnose', title: 'Diagnose' },
  { id: 'explain', title: 'Explain' },
  { id: 'action', title: 'Choose a fix' },
  { id: 'preview', title: 'Preview' },
  { id: 'apply', title: 'Apply' },
  { id: 'verify', title: 'Verify' },
  { id: 'report', title: 'Report' },
];

export type Target = 'copy' | 'inPlace';
export type Action = 'leaks' | 'all' | 'salvage';

export interface KindGroup {
  kind: string;
  title: string;
  severity: Severity;
  records: number;
  clusters: number;
  explanation: string;
  fix: string;
  /** First host cluster of the first record, to centre the map on. */
  firstCluster?: number;
}

/** A file image.open refused (destroyed header, unreadable L1...): only salvage can read it. */
export interface Unopenable {
  /** The salvage-source handle the refusal carried. */
  handle: string;
  name: string;
  reason: string;
}

export interface WizardJob {
  label: string;
  fraction: number;
  stage: string;
  /** Absent while the job must not be stopped (writing). */
  controller?: AbortController;
  /** performance.now() at the start, and the bytes the job goes over: for the rate and time left. */
  started: number;
  total?: number;
}

class WizardState {
  step = $state<Step>('choose');
  image = $state<OpenedImage | null>(null);
  lock = $state<LockStatus | null>(null);
  target = $state<Target>('copy');
  check = $state<CheckSummary | null>(null);
  groups = $state<KindGroup[]>([]);
  verdict = $state<PlainVerdict | null>(null);
  action = $state<Action | null>(null);
  plan = $state<RepairPlanResult | null>(null);
  applied = $state<RepairApplyResult | null>(null);
  verify = $state<VerifyResult | null>(null);
  saved = $state<SavedOutput[]>([]);
  undone = $state<string | null>(null);
  salvage = $state<string | null>(null);
  /** Salvage path: the refused file, the leak assessment, the scan and the export. */
  unopenable = $state<Unopenable | null>(null);
  assessment = $state<SalvageAssessment | null>(null);
  salvageScan = $state<SalvageScanResult | null>(null);
  salvageFormat = $state<'qcow2' | 'raw'>('qcow2');
  /** The user said the image had no backing file (its header, which would say so, is lost). */
  salvageNoBacking = $state(false);
  salvaged = $state<SalvageExportResult | null>(null);
  /** What "repair everything" would leave undecided (made during the diagnosis of a corrupt image). */
  refusals = $state<string[]>([]);
  job = $state<WizardJob | null>(null);
  error = $state<string | null>(null);

  private fail(e: unknown): void {
    this.error =
      e instanceof ContractError && e.code === 'cancelled' ? null : e instanceof Error ? e.message : String(e);
  }

  reset(): void {
    this.step = 'choose';
    this.image = null;
    this.lock = null;
    this.target = 'copy';
    this.check = null;
    this.groups = [];
    this.verdict = null;
    this.action = null;
    this.plan = null;
    this.applied = null;
    this.verify = null;
    this.saved = [];
    this.undone = null;
    this.salvage = null;
    this.unopenable = null;
    this.assessment = null;
    this.salvageScan = null;
    this.salvageFormat = 'qcow2';
    this.salvageNoBacking = false;
    this.salvaged = null;
    this.refusals = [];
    this.job = null;
    this.error = null;
  }

  /** 1. Open the chosen image (read-only) and go to the safety step. */
  async choose(ref: FileRef): Promise<void> {
    this.error = null;
    try {
      const opened = await app.client.call('image.open', { ref });
      this.reset();
      this.image = opened;
      this.step = 'safety';
      await this.refreshLock();
    } catch (e) {
      if (e instanceof ContractError && e.salvageSource !== undefined) {
        // Not openable as an image: explain it, and offer salvage (it reads the file itself).
        this.offerSalvage({ handle: e.salvageSource, name: e.salvageName ?? 'the chosen image', reason: e.message });
        return;
      }
      if (!(e instanceof ContractError && e.code === 'cancelled' && ref.kind === 'dialog')) this.fail(e);
    }
  }

  /** Start on an image the main window has open (Overview's "Repair…"): straight to the safety step. */
  async begin(img: OpenedImage): Promise<void> {
    this.reset();
    this.image = img;
    this.step = 'safety';
    await this.refreshLock();
  }

  /** Start at the explanation for a file the main window failed to open. */
  offerSalvage(u: Unopenable): void {
    this.reset();
    this.unopenable = u;
    this.step = 'explain';
  }

  /** Leaked clusters that are orphaned tables still mapping data (a lost L1): salvage first. */
  get salvageAdvised(): boolean {
    return (
      this.unopenable !== null ||
      this.verdict?.word === 'unreadable' ||
      this.check?.failed !== undefined ||
      !!this.assessment?.advice ||
      this.refusals.length > 0
    );
  }

  /** 2. Who holds the image, and the space a copy needs. */
  async refreshLock(): Promise<void> {
    if (!this.image) return;
    try {
      this.lock = await app.client.call('lock.status', { handle: this.image.handle });
      if (
        this.lock.spaceFree !== undefined &&
        this.lock.spaceNeeded !== undefined &&
        this.lock.spaceFree < this.lock.spaceNeeded * 1.1
      )
        this.target = 'inPlace';
    } catch (e) {
      this.fail(e);
    }
  }

  /** Run a long request with the wizard's progress bar (and Cancel when `cancellable`). */
  private async run<T>(
    label: string,
    cancellable: boolean,
    fn: (opts: { signal?: AbortSignal; onProgress: (p: { fraction: number; stage: string }) => void }) => Promise<T>,
  ): Promise<T | undefined> {
    const controller = cancellable ? new AbortController() : undefined;
    const total = this.image?.overview.fileSize;
    this.job = {
      label,
      fraction: 0,
      stage: 'starting',
      started: performance.now(),
      ...(controller ? { controller } : {}),
      ...(total !== undefined ? { total } : {}),
    };
    this.error = null;
    try {
      return await fn({
        ...(controller ? { signal: controller.signal } : {}),
        onProgress: (p) => {
          if (this.job) {
            this.job.fraction = p.fraction;
            this.job.stage = p.stage;
          }
        },
      });
    } catch (e) {
      if (e instanceof ContractError && e.code === 'cancelled') this.error = null;
      else this.fail(e);
      return undefined;
    } finally {
      this.job = null;
    }
  }

  cancel(): void {
    this.job?.controller?.abort();
  }

  /** 3. The check, with progress and Cancel; then 4. the explanation. */
  async diagnose(): Promise<void> {
    const img = this.image;
    if (!img) return;
    this.step = 'diagnose';
    const check = await this.run(`Checking ${img.name}`, true, (o) =>
      app.client.call('check.run', { handle: img.handle }, o),
    );
    if (!check) return; // cancelled or failed: stay on the diagnose step (Retry / Back)
    const page: AnomalyPage = await app.client.call('anomalies.list', { handle: img.handle, limit: 1000 });
    const first = new Map<string, Anomaly>();
    // A leak over a lost table's data is reworded by the checker ("the data is at risk"): that is
    // the example the leak group shows, never "mark it free; no data is lost".
    const atRisk = page.items.find((a) => a.kind === 'leaked-cluster' && !/no data is lost/.test(a.fix));
    if (atRisk) first.set(atRisk.kind, atRisk);
    for (const a of page.items) if (!first.has(a.kind)) first.set(a.kind, a);
    // Kinds whose records are not on the first page: fetch one example each.
    for (const k of page.byKind) {
      if (!first.has(k.kind)) {
        const p = await app.client.call('anomalies.list', { handle: img.handle, kind: k.kind, limit: 1 });
        if (p.items[0]) first.set(k.kind, p.items[0]);
      }
    }
    const hasLost = page.byKind.some((k) => k.kind === 'lost-table');
    this.groups = page.byKind.map((k) => {
      const a = first.get(k.kind);
      const g: KindGroup = {
        kind: k.kind,
        title: kindTitle(k.kind),
        severity: k.severity,
        records: k.records,
        clusters: k.clusters || k.records,
        explanation: a?.explanation ?? '',
        fix: a?.fix ?? '',
      };
      if (a?.firstCluster !== undefined) g.firstCluster = a.firstCluster;
      if (k.kind === 'leaked-cluster' && hasLost && /no data is lost/.test(g.fix)) {
        g.explanation = LEAKS_WITH_LOST_TABLES;
        g.fix = LOST_TABLES_ADVICE;
      }
      return g;
    });
    const ov = img.overview;
    // The lost tables themselves (with the bytes they map), the other kinds by their counts.
    const lostTables = hasLost ? await app.lostTablesOf(img.handle) : [];
    const pseudo = [
      ...lostTables,
      ...page.byKind
        .filter((k) => k.kind !== 'lost-table')
        .map((k) => ({ kind: k.kind, count: k.clusters || k.records }) as Anomaly),
    ];
    this.verdict = plainVerdict({
      counters: check.counters,
      anomalies: pseudo,
      dirty: ov.dirty,
      corrupt: ov.corrupt,
      ...(check.failed !== undefined ? { failed: check.failed } : {}),
    });
    this.check = check;
    this.assessment = null;
    if (check.counters.leaks > 0 && app.hello?.available.includes('salvage.assess'))
      this.assessment = await app.client.call('salvage.assess', { handle: img.handle }).catch(() => null);
    // Errors the repair would refuse to guess about (pointers into nowhere) mean the metadata is
    // beyond repair there: the explain step says so and recommends salvage.
    this.refusals = [];
    if (check.counters.corruptions > 0 && app.hello?.available.includes('salvage.scan')) {
      const plan = await this.run('Working out what a repair could fix', false, () =>
        app.client.call('repair.plan', { handle: img.handle, mode: 'all' }),
      );
      this.refusals = plan?.leaves ?? [];
    }
    await this.adoptIntoApp(img, check);
    this.step = 'explain';
  }

  /**
   * Let the header, Overview and the map views show the wizard's image as its latest check found
   * it: the verdict first (always), then the maps (a convenience: the wizard goes on without them).
   */
  private async adoptIntoApp(img: OpenedImage, check: CheckSummary): Promise<void> {
    const lost = await app.lostTablesOf(img.handle).catch(() => []);
    app.image = img;
    app.lostTables = lost;
    app.check = check;
    app.hostMap = null;
    app.guestMap = null;
    app.anomalyRanges = null;
    try {
      const [hostMap, ranges] = await Promise.all([
        app.client.call('map.host', { handle: img.handle }),
        app.client.call('anomalies.ranges', { handle: img.handle }),
      ]);
      if (app.image?.handle !== img.handle) return;
      app.hostMap = hostMap;
      app.anomalyRanges = ranges;
    } catch {
      // The maps can be opened later from their views.
    }
  }

  /** Centre the cluster map on a finding. */
  showOnMap(cluster: number): void {
    app.focusHostCluster = cluster;
    app.view = 'host-map';
  }

  /** 5 → 6. Make the exact plan for the chosen repair. */
  async preview(action: Action): Promise<void> {
    this.action = action;
    if (action === 'salvage') {
      await this.scanForSalvage();
      return;
    }
    const img = this.image;
    if (!img) return;
    const plan = await this.run('Planning the repair', false, () =>
      app.client.call('repair.plan', { handle: img.handle, mode: action }),
    );
    if (!plan) return;
    this.plan = plan;
    this.step = 'preview';
  }

  /** 7. Apply: not cancellable once writing starts (the engine honours a cancel only before). */
  async apply(): Promise<void> {
    const img = this.image;
    const plan = this.plan;
    if (!img || !plan) return;
    this.step = 'apply';
    const target =
      this.target === 'copy'
        ? { kind: 'copy' as const, save: { kind: 'sibling' as const } }
        : { kind: 'inPlace' as const, journal: true };
    const r = await this.run('Repairing', false, (o) =>
      app.client.call('repair.apply', { handle: img.handle, planId: plan.planId, target }, o),
    );
    if (!r) return;
    this.applied = r;
    await this.verifyNow();
  }

  /** 8. A fresh check of the repaired image, QEMU's verdict, and the guest data compared. */
  async verifyNow(): Promise<void> {
    const r = this.applied;
    if (!r) return;
    this.step = 'verify';
    const v = await this.run('Verifying the repaired image', true, (o) =>
      app.client.call('repair.verify', { handle: r.handle }, o),
    );
    if (!v) return;
    // The header, Overview and the maps show the repaired image before its result is shown, so
    // the badge never contradicts it.
    await this.run('Updating the views with the repaired image', false, async () => {
      try {
        const [overview, check] = await Promise.all([
          app.client.call('image.overview', { handle: r.handle }),
          app.client.call('check.run', { handle: r.handle }),
        ]);
        await this.adoptIntoApp({ handle: r.handle, name: r.name, overview }, check);
      } catch {
        // The verification is what counts; the maps can be opened later.
      }
    });
    this.verify = v;
  }

  /** 9. Save the report next to the image (or download it in a browser). */
  async saveReport(format: 'html' | 'json', inline: boolean): Promise<SavedOutput | undefined> {
    const handle = this.applied?.handle ?? this.image?.handle;
    if (!handle) return undefined;
    try {
      const out = await app.client.call('report.export', {
        handle,
        format,
        save: inline ? { kind: 'inline' } : { kind: 'sibling' },
      });
      this.saved = [...this.saved, out];
      return out;
    } catch (e) {
      this.fail(e);
      return undefined;
    }
  }

  async strip(): Promise<void> {
    const handle = this.image?.handle;
    if (!handle) return;
    const out = await this.run('Writing a metadata-only copy', true, (o) =>
      app.client.call('image.strip', { handle, what: [], save: { kind: 'sibling' } }, o),
    );
    if (out) this.saved = [...this.saved, out];
  }

  async undo(): Promise<void> {
    const r = this.applied;
    if (!r?.journal) return;
    try {
      const u = await app.client.call('repair.undo', { handle: r.handle });
      if (!u.ok) {
        this.undone = u.detail;
        return;
      }
      this.applied = { ...r, journal: undefined } as RepairApplyResult;
      // The image is back as it was: check it again so the header badge and the maps tell the truth
      // by the time the undo is reported.
      try {
        const check = await this.run('Checking the restored image', true, (o) =>
          app.client.call('check.run', { handle: r.handle }, o),
        );
        if (check) {
          const overview = await app.client.call('image.overview', { handle: r.handle });
          await this.adoptIntoApp({ handle: r.handle, name: r.name, overview }, check);
        }
      } finally {
        this.undone = u.detail;
      }
    } catch (e) {
      this.fail(e);
    }
  }

  /** The handle salvage reads: the opened image, or the file image.open refused. */
  private get salvageHandle(): string | undefined {
    return this.unopenable?.handle ?? this.image?.handle;
  }

  /** The user says the image had no backing file: scan again, counting unallocated ranges as empty. */
  async salvageWithoutBacking(): Promise<void> {
    this.salvageNoBacking = true;
    await this.scanForSalvage();
  }

  /** 6 (salvage). Scan the file: what will be recovered, lost and guessed. Nothing is written. */
  async scanForSalvage(): Promise<void> {
    const handle = this.salvageHandle;
    if (!handle) return;
    this.step = 'preview';
    this.salvageScan = null;
    const noBacking = this.salvageNoBacking;
    const scan = await this.run('Scanning the file for your data', true, (o) =>
      app.client.call('salvage.scan', { handle, ...(noBacking ? { noBacking } : {}) }, o),
    );
    if (scan) this.salvageScan = scan;
  }

  /** 7–8 (salvage). Write the recovered disk to a new file, then check it (our check and qemu-img's). */
  async runSalvage(): Promise<void> {
    const handle = this.salvageHandle;
    if (!handle) return;
    this.step = 'apply';
    const format = this.salvageFormat;
    const noBacking = this.salvageNoBacking;
    const out = await this.run('Writing the recovered disk', true, (o) =>
      app.client.call(
        'salvage.export',
        { handle, save: { kind: 'sibling' }, format, ...(noBacking ? { noBacking } : {}) },
        o,
      ),
    );
    if (!out) {
      this.step = 'preview';
      return;
    }
    this.salvaged = out;
    this.saved = [...this.saved, out, ...(out.reportName ? [{ name: out.reportName, size: 0 }] : [])];
    const p = out.preview;
    this.salvage = p ? salvageSentence(p, out.name) : `The recovered disk was written to ${out.name}.`;
    this.step = 'verify';
    if (!out.handle) return; // raw output: no metadata to check
    const v = await this.run('Checking the salvaged image', true, (o) =>
      app.client.call('repair.verify', { handle: out.handle! }, o),
    );
    if (!v) return;
    this.verify = v;
    // The header and the map views now show the salvaged image.
    try {
      const [overview, check] = await Promise.all([
        app.client.call('image.overview', { handle: out.handle }),
        app.client.call('check.run', { handle: out.handle }),
      ]);
      await this.adoptIntoApp({ handle: out.handle, name: out.name, overview }, check);
    } catch {
      // The verification above is what counts; the maps can be opened later.
    }
  }

  back(): void {
    const order: Step[] = ['choose', 'safety', 'diagnose', 'explain', 'action', 'preview'];
    const i = order.indexOf(this.step);
    if (this.unopenable && this.step === 'explain') this.reset();
    else if (i > 0) this.step = order[i - 1] === 'diagnose' ? 'safety' : order[i - 1]!;
    this.error = null;
  }
}

export const wizard = new WizardState();

/** The salvage's outcome in one sentence: "nothing was lost" only when every position is certain. */
export function salvageSentence(p: SalvagePreview, name: string): string {
  const lost = p.bytes.lost ? `${bytes(p.bytes.lost)} could not be found and reads as zeros` : '';
  const guess = p.bytes.guessed
    ? `${bytes(p.bytes.guessed)} placed by guess, confidence ${p.guessedConfidence ?? 0}: that data may sit at the wrong place in the disk`
    : '';
  const tail = [lost, guess].filter(Boolean).join('; ') || 'every byte is at a certain place, nothing was lost';
  return `Recovered ${bytes(p.bytes.recovered)} of data to ${name}; ${tail}.`;
}
