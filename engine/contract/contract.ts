/**
 * THE renderer↔engine contract: every request (with a runtime validator for its arguments), every
 * result shape, the progress event, the wire envelopes and the errors. The Electron preload, the
 * engine host, the WebSocket server (`qcow2-doctor serve`) and the renderer all import this one
 * module; nothing else defines what crosses the boundary. Pure TypeScript: no node:, no DOM.
 *
 * Files are never named by a path the renderer chose to write: images are opened through a
 * FileRef (a native dialog in Electron, a path under the served root in the browser, a recent
 * entry, a file main granted (dialog, drop, file association), a bundled sample) and then referred
 * to by an opaque handle. Outputs go to a SaveRef (a native save dialog, or a name the engine derives next to the source).
 *
 * Large typed arrays (role maps: up to 16.8 M bytes) are Uint8Array / Float64Array fields; the
 * WebSocket codec (wire.ts) sends them as binary, Electron's structured clone copies them as is.
 */
import type { Anomaly, QemuCounters, Referrer, Severity } from './findings.js';
import type { ProgressEvent } from '../base/task-control.js';
import type { WireError } from './errors.js';
import {
  array,
  bool,
  obj,
  oneOf,
  optional,
  str,
  tagged,
  uint,
  literal,
  type Infer,
  type Validator,
} from './validate.js';

export const CONTRACT_VERSION = 1;
export type {
  SalvageAssessment,
  SalvagedBytes,
  SalvageExportResult,
  SalvagePreview,
  SalvageScanResult,
} from './salvage-results.js';
import type { SalvageAssessment, SalvageExportResult, SalvageScanResult } from './salvage-results.js';
export type { ChainLayerInfo, GuestLayers } from './guest-layers.js';
import type { GuestLayers } from './guest-layers.js';
export type { Anomaly, QemuCounters, Referrer, Severity, ProgressEvent, WireError };
import { ContractError } from './errors.js';
export { ContractError };
import { historyRequests, type HistoryResults } from './history.js';
export type * from './history.js';
export type { ErrorCode } from './errors.js';

// ---------------------------------------------------------------- shared argument pieces

/** Opaque handle of an opened image (random, never a path). */
export const handle = str({ max: 64, pattern: /^[A-Za-z0-9_-]{8,64}$/ });
const relPath = str({ max: 4096, min: 1 });
const id = str({ max: 128, pattern: /^[A-Za-z0-9_.:-]{1,128}$/ });

/** Where an image to open comes from. */
export const fileRef = tagged({
  /** A path relative to the served root (`serve` only; symlinks resolved, escapes refused). */
  root: obj({ kind: literal('root'), path: relPath }),
  /** Ask the user with the native open dialog (Electron only). */
  dialog: obj({ kind: literal('dialog') }),
  /** An entry of recent.list. */
  recent: obj({ kind: literal('recent'), id }),
  /**
   * A file the main process granted the engine: chosen in the native dialog, dropped on the window
   * (the id from the preload's `registerDrop`), or handed over by a file association.
   */
  granted: obj({ kind: literal('granted'), id }),
  /** A bundled sample image (resources/samples). */
  sample: obj({ kind: literal('sample'), name: str({ max: 128, pattern: /^[A-Za-z0-9_.-]+$/ }) }),
});
export type FileRef = Infer<typeof fileRef>;

/** Where an output goes. Never a renderer-chosen path. */
export const saveRef = tagged({
  /** Native save dialog (Electron only). */
  dialog: obj({ kind: literal('dialog') }),
  /** A new file next to the source, named by the engine (e.g. disk.repaired.qcow2), never overwriting. */
  sibling: obj({ kind: literal('sibling'), suffix: optional(str({ max: 64, pattern: /^[A-Za-z0-9_.-]+$/ })) }),
  /** The response carries the bytes (browser download). Reports only. */
  inline: obj({ kind: literal('inline') }),
});
export type SaveRef = Infer<typeof saveRef>;

const MAX_HEX_READ = 2 * 1024 * 1024;

// ---------------------------------------------------------------- requests: argument validators

export const REQUESTS = {
  // --- app and files (handlers/app.ts, handlers/image.ts)
  'app.hello': obj({}),
  'files.list': obj({ dir: optional(str({ max: 4096 })) }),
  'recent.list': obj({}),
  'recent.forget': obj({ id }),
  // --- one image (handlers/image.ts)
  'image.open': obj({ ref: fileRef }),
  'image.close': obj({ handle }),
  'image.overview': obj({ handle }),
  // --- check and maps (handlers/check.ts, handlers/map.ts)
  'check.run': obj({ handle, roleMap: optional(bool), guestMap: optional(bool) }),
  'map.host': obj({ handle }),
  'map.guest': obj({ handle }),
  'anomalies.list': obj({
    handle,
    offset: optional(uint()),
    limit: optional(uint(1000)),
    kind: optional(str({ max: 128 })),
    severity: optional(oneOf('error', 'leak', 'warning', 'info')),
  }),
  'anomalies.ranges': obj({ handle }),
  /** `referrers: false` skips the table scan (hover); the default finds who references the cluster (click). */
  'cluster.describe': obj({ handle, cluster: uint(), referrers: optional(bool) }),
  'guest.locate': obj({ handle, guestCluster: uint() }),
  'bytes.read': obj({ handle, offset: uint(), length: uint(MAX_HEX_READ) }),
  // --- several images (handlers/triage.ts)
  'triage.scan': obj({ refs: optional(array(fileRef, 1000)), folder: optional(fileRef), recursive: optional(bool) }),
  // --- repair (handlers/recovery.ts)
  'repair.plan': obj({ handle, mode: optional(oneOf('leaks', 'all')) }),
  'repair.apply': obj({
    handle,
    planId: id,
    target: tagged({
      copy: obj({ kind: literal('copy'), save: saveRef }),
      inPlace: obj({ kind: literal('inPlace'), journal: optional(bool) }),
    }),
  }),
  'repair.undo': obj({ handle }),
  'repair.verify': obj({ handle }),
  'lock.status': obj({ handle }),
  // --- report, strip, salvage (handlers/report.ts, handlers/salvage.ts)
  'report.export': obj({ handle, format: oneOf('html', 'json'), save: saveRef }),
  'image.strip': obj({
    handle,
    what: array(oneOf('bitmaps', 'snapshots', 'backing', 'unknown-extensions'), 8),
    save: saveRef,
  }),
  /** `handle`: an opened image, or the salvageSource of an image.open that failed. `noBacking`: the user
   * says the image had no backing file (when the header that would say so is lost; `--no-backing`). */
  'salvage.scan': obj({ handle, noBacking: optional(bool) }),
  'salvage.export': obj({ handle, save: saveRef, format: optional(oneOf('raw', 'qcow2')), noBacking: optional(bool) }),
  /** After a check: do leaked clusters look like lost tables still pointing at data (a zeroed L1)? */
  'salvage.assess': obj({ handle }),
  // --- write history (handlers/history.ts)
  ...historyRequests(fileRef),
} satisfies Record<string, Validator<unknown>>;

export type Method = keyof typeof REQUESTS;
export type ArgsOf<M extends Method> = Infer<(typeof REQUESTS)[M]>;
export const METHODS = Object.keys(REQUESTS) as Method[];

/** Requests that report progress and accept a cancel. */
export const LONG_METHODS: ReadonlySet<Method> = new Set<Method>([
  'check.run',
  'triage.scan',
  'repair.apply',
  'repair.verify',
  'salvage.scan',
  'salvage.export',
  'image.strip',
  'history.open',
  'history.record',
  'history.judge',
]);

export function isMethod(m: unknown): m is Method {
  return typeof m === 'string' && Object.hasOwn(REQUESTS, m);
}

/** Validate a request's arguments; throws ContractError('invalid-argument'). */
export function validateArgs<M extends Method>(method: M, args: unknown): ArgsOf<M> {
  return REQUESTS[method](args ?? {}, 'args') as ArgsOf<M>;
}

// ---------------------------------------------------------------- results

export type HostKind = 'electron' | 'serve' | 'test';

export interface Hello {
  version: string;
  contractVersion: number;
  host: HostKind;
  /** Methods whose handler exists in this build (others answer 'not-available'). */
  available: Method[];
  /** Bundled samples that `image.open {kind:'sample'}` accepts. */
  samples: string[];
  /** Name of the served root (serve), for display. */
  root?: string;
}

export interface FileEntry {
  name: string;
  /** Relative to the root, '/'-separated; pass back as FileRef {kind:'root', path}. */
  path: string;
  kind: 'file' | 'dir';
  size: number;
  /** The first 4 bytes are qcow2's magic. */
  qcow2: boolean;
}

export interface FileList {
  dir: string;
  entries: FileEntry[];
}

export interface RecentEntry {
  id: string;
  name: string;
  /** Directory shown to the user (Electron); omitted when serving. */
  location?: string;
  openedAt: string;
}

export interface HeaderField {
  name: string;
  value: string;
  /** Plain-words meaning, when it helps. */
  note?: string;
}

export interface FeatureInfo {
  type: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
  meaning: string;
}

export interface ExtensionInfo {
  type: string;
  name: string;
  length: number;
  known: boolean;
  summary: string;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  date: string;
  virtualSize: number;
  l1Size: number;
  l1TableOffset: number;
}

export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: string[];
  tableOffset: number;
  tableSize: number;
}

export interface BackingLayer {
  depth: number;
  name: string;
  format?: string;
  /** Found next to the image (and inside the served root when serving). */
  present: boolean;
  virtualSize?: number;
}

export interface Overview {
  name: string;
  fileSize: number;
  version: 2 | 3;
  clusterSize: number;
  clusterBits: number;
  virtualSize: number;
  refcountBits: number;
  hostClusters: number;
  guestClusters: number;
  extendedL2: boolean;
  compression: 'zlib' | 'zstd';
  encryption: 'none' | 'aes' | 'luks';
  dirty: boolean;
  corrupt: boolean;
  /** Plain-words sentence for the dirty/corrupt state. */
  stateNote: string;
  fields: HeaderField[];
  features: FeatureInfo[];
  extensions: ExtensionInfo[];
  snapshots: SnapshotInfo[];
  /** Why snapshots could not be listed, when they could not. */
  snapshotsError?: string;
  bitmaps: BitmapInfo[];
  bitmapsError?: string;
  backing: BackingLayer[];
  dataFile?: string;
}

export interface OpenedImage {
  handle: string;
  name: string;
  overview: Overview;
  /** The recent-list entry created or refreshed by this open. */
  recentId?: string;
}

export interface CheckSummary {
  counters: QemuCounters;
  failed?: string;
  hostClusters: number;
  guestClusters: number;
  clusterSize: number;
  anomalyCount: number;
  /** Counts per HostRole code (index = code). */
  hostLegend: number[];
  /** Counts per GuestState code. */
  guestLegend: number[];
  /** Counts by severity over anomaly records. */
  severities: Record<Severity, number>;
  elapsed: number;
}

export interface HostMap {
  clusterSize: number;
  hostClusters: number;
  /** HostRole per host cluster. */
  roles: Uint8Array;
  hostLegend: number[];
}

export interface GuestMap {
  clusterSize: number;
  guestClusters: number;
  /** GuestState per guest cluster. */
  states: Uint8Array;
  guestLegend: number[];
  /** For an image with a backing file: which layer of the chain each guest cluster is read from. */
  layers?: GuestLayers;
  /** The layers could not be worked out (a damaged table, an unreadable backing file): why. */
  layersError?: string;
}

export interface AnomalyPage {
  total: number;
  offset: number;
  items: Anomaly[];
  byKind: Array<{ kind: string; severity: Severity; records: number; clusters: number }>;
}

/** Anomalous host-cluster runs for the map overlay, as parallel arrays. */
export interface AnomalyRanges {
  first: Float64Array;
  count: Float64Array;
  /** 1 info, 2 warning, 3 leak, 4 error. */
  severity: Uint8Array;
}

export interface ClusterDescription {
  cluster: number;
  offset: number;
  role: number;
  roleName: string;
  /** On-disk refcount (null when no refcount block covers it or it cannot be read). */
  refcount: number | null;
  /** References the metadata holds to the cluster, exact (null when unknown). */
  references: number | null;
  referrers: Referrer[];
  /** False when the referrer scan was skipped or stopped at its byte budget (the list may be partial). */
  referrersComplete: boolean;
  /** Every referrer found, listed or not (absent when the scan did not run to its end). */
  referrerCount?: number;
  /** Referrers found per kind ('l2', 'snapshot-l2', 'l1', 'header', ...). */
  referrersByKind?: Array<{ kind: string; count: number }>;
  anomalies: Anomaly[];
  beyondEof: boolean;
}

export interface GuestLocation {
  guestCluster: number;
  guestOffset: number;
  state: number;
  stateName: string;
  l1Index: number;
  l2Index: number;
  /** Host offset of the L2 table holding the entry (absent when the L1 entry is empty). */
  l2Table?: number;
  /** Raw L2 entry as 16 hex digits. */
  entry?: string;
  /** Where the data lives in the host file (absent for unallocated/zero). */
  hostOffset?: number;
  hostCluster?: number;
  /** Compressed stream size in bytes, for compressed clusters. */
  compressedSize?: number;
  /** For backing reads: the layer that holds it (1 = direct backing file), when known. */
  backingDepth?: number;
  /** For backing reads: where in the chain the guest data really comes from (when the layer could be read). */
  backingLayer?: { depth: number; name: string; stateName: string; hostOffset?: number };
}

export interface HostBytes {
  offset: number;
  /** Fewer than asked at end of file. */
  bytes: Uint8Array;
  fileSize: number;
}

// Results for the handlers other engineers fill in (kept loose where their design decides).
export interface TriageRow {
  name: string;
  ref: FileRef;
  verdict: 'clean' | 'leaks' | 'corrupt' | 'unreadable' | 'not-qcow2' | 'in-use';
  summary: string;
  /** Without a qcow2 header: not a disk image, a raw disk, or a qcow2 whose header is damaged (salvage). */
  content?: 'not-disk' | 'raw-disk' | 'damaged-header';
  counters?: QemuCounters;
  /** Triage table columns. */
  dirty?: boolean;
  corrupt?: boolean;
  virtualSize?: number;
  fileSize?: number;
  backingChain?: string[];
  /** Seconds the check took. */
  elapsed?: number;
}
export interface RepairPlanResult {
  planId: string;
  steps: Array<{ title: string; detail: string; risk: 'none' | 'low' | 'high' }>;
  fixes: number;
  leaves: string[];
  /** Guest data the repair loses: the ranges it names (they read as zeros or from the backing file afterwards) and
   *  the bytes it frees whose guest position nobody can tell. Empty ranges and 0 bytes when it loses nothing. */
  loses: { ranges: Array<{ start: number; length: number }>; rangesMore: number; unplacedBytes: number };
}
export interface RepairApplyResult {
  handle: string;
  name: string;
  journal?: string;
  counters: QemuCounters;
}
export interface VerifyResult {
  ok: boolean;
  counters: QemuCounters;
  qemu?: { status: number; summary: string };
  /** Guest data of the repaired image compared with the image before the repair. */
  guestData?: { comparedBytes: number; differingBytes: number; detail: string };
}
export interface LockStatus {
  locked: boolean;
  holder?: string;
  detail: string;
  /** Bytes a repaired copy needs (the image's allocated size) and bytes free next to it. */
  spaceNeeded?: number;
  spaceFree?: number;
}
export interface SavedOutput {
  name: string;
  bytes?: Uint8Array;
  mime?: string;
  size: number;
}
export interface Results {
  'app.hello': Hello;
  'files.list': FileList;
  'recent.list': RecentEntry[];
  'recent.forget': { ok: true };
  'image.open': OpenedImage;
  'image.close': { ok: true };
  'image.overview': Overview;
  'check.run': CheckSummary;
  'map.host': HostMap;
  'map.guest': GuestMap;
  'anomalies.list': AnomalyPage;
  'anomalies.ranges': AnomalyRanges;
  'cluster.describe': ClusterDescription;
  'guest.locate': GuestLocation;
  'bytes.read': HostBytes;
  'triage.scan': TriageRow[];
  'repair.plan': RepairPlanResult;
  'repair.apply': RepairApplyResult;
  'repair.undo': { ok: boolean; detail: string };
  'repair.verify': VerifyResult;
  'lock.status': LockStatus;
  'report.export': SavedOutput;
  'image.strip': SavedOutput;
  'salvage.scan': SalvageScanResult;
  'salvage.export': SalvageExportResult;
  'salvage.assess': SalvageAssessment;
}
export interface Results extends HistoryResults {}
export type ResultOf<M extends Method> = Results[M];

// ---------------------------------------------------------------- wire envelopes

/** Renderer → engine. `id` is chosen by the client, unique per connection. */
export interface RequestMessage<M extends Method = Method> {
  t: 'req';
  id: number;
  method: M;
  args: ArgsOf<M>;
}
/** Renderer → engine: cancel the request with this id (no answer; the request ends with 'cancelled'). */
export interface CancelMessage {
  t: 'cancel';
  id: number;
}
export type ResponseMessage =
  | { t: 'res'; id: number; ok: true; result: unknown }
  | { t: 'res'; id: number; ok: false; error: WireError };
/** Engine → renderer, while request `id` runs. */
export interface ProgressMessage {
  t: 'progress';
  id: number;
  progress: ProgressEvent;
}
/** Engine → renderer, unsolicited (e.g. Electron's menu "Open…" result, a file opened by association). */
export interface NoticeMessage {
  t: 'notice';
  notice: Notice;
}
export type Notice =
  /** Open this image (a file association, Open Recent in the menu, the first-run sample). */
  | { kind: 'open'; ref: FileRef }
  | { kind: 'opened'; image: OpenedImage }
  | { kind: 'menu'; command: 'open' | 'close' | 'about' | 'view'; view?: string }
  | { kind: 'error'; error: WireError };

export type ClientMessage = RequestMessage | CancelMessage;
export type ServerMessage = ResponseMessage | ProgressMessage | NoticeMessage;

/** Validate an incoming client message's envelope (arguments are validated by the service). */
export function parseClientMessage(m: unknown): ClientMessage {
  if (typeof m !== 'object' || m === null) throw envelopeError('message must be an object');
  const v = m as { t?: unknown; id?: unknown; method?: unknown; args?: unknown };
  if (typeof v.id !== 'number' || !Number.isSafeInteger(v.id) || v.id < 0)
    throw envelopeError('message.id must be a non-negative integer');
  if (v.t === 'cancel') return { t: 'cancel', id: v.id };
  if (v.t !== 'req') throw envelopeError('message.t must be "req" or "cancel"');
  if (!isMethod(v.method)) throw envelopeError(`unknown method ${JSON.stringify(String(v.method)).slice(0, 80)}`);
  return { t: 'req', id: v.id, method: v.method, args: (v.args ?? {}) as never };
}

const envelopeError = (message: string): ContractError => new ContractError('invalid-argument', message);

// ---------------------------------------------------------------- the client-side API

/** What the renderer holds: one typed call, progress per call, a cancel. */
export interface ContractClient {
  call<M extends Method>(method: M, args: ArgsOf<M>, opts?: CallOptions): Promise<ResultOf<M>>;
  onNotice(listener: (n: Notice) => void): () => void;
}

export interface CallOptions {
  onProgress?: (p: ProgressEvent) => void;
  /** Abort → a CancelMessage; the call rejects with code 'cancelled'. */
  signal?: AbortSignal;
}

/**
 * What Electron's preload exposes on `window.qcow2doctor` (contextBridge): a message pipe carrying
 * exactly the envelopes above, plus the one thing only the preload can do (turn a dropped File into
 * an opaque id).
 */
export interface PreloadBridge {
  readonly contractVersion: number;
  send(message: ClientMessage): void;
  onMessage(listener: (m: ServerMessage) => void): () => void;
  /** Register a dropped file with main; resolves to the id for FileRef {kind:'granted'}. */
  registerDrop(file: unknown): Promise<string>;
}
