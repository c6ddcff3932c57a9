import type { CancelToken, ProgressSink } from '../service/progress.js';

/**
 * The checker's public contract. The CLI, the service (app), the repair planner, the crash lab
 * and triage all consume these types; extend by adding fields, never by changing meaning.
 */
export type RepairMode = 'leaks' | 'all';

export interface CheckOptions {
  /** QEMU's -r. Absent: check only, never writes. */
  repair?: RepairMode;
  /** Build the per-host-cluster role map (and per-cluster refcount arrays). Costs memory. */
  roleMap?: boolean;
  /** Build the per-guest-cluster state map. */
  guestMap?: boolean;
  /** QEMU's per-problem lines (what qemu-img prints on stderr), streamed in QEMU's order. */
  onMessage?: (line: string) => void;
  onProgress?: ProgressSink;
  cancel?: CancelToken;
  /**
   * Name the referrers of clusters in trouble (cross-links, refcounts below their references):
   * one more pass over the metadata, only when there are such clusters. Default true.
   */
  explainReferrers?: boolean;
}

/** QEMU's BdrvCheckResult + fragmentation info, with QEMU's meanings. */
export interface QemuCounters {
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

export type Severity = 'error' | 'leak' | 'warning' | 'info';

/** Who references a host cluster. */
export interface Referrer {
  /** e.g. 'header', 'l1', 'l2', 'snapshot-l1', 'refcount-table', 'snapshot-table', 'bitmap-table', ... */
  kind: string;
  /** Host offset of the referring table, when there is one. */
  table?: number;
  /** Index of the entry inside that table. */
  index?: number;
  /** Guest offset the entry maps, for L2 entries. */
  guestOffset?: number;
  /** Snapshot id, for references reachable from a snapshot. */
  snapshotId?: string;
}

/**
 * One finding. Runs of the same kind over consecutive clusters are aggregated into one record
 * (firstCluster..firstCluster+count-1), so millions of findings stay small.
 */
export interface Anomaly {
  /** Stable machine name, e.g. 'leaked-cluster', 'refcount-too-low', 'oflag-copied-l2'. */
  kind: string;
  severity: Severity;
  /** First host cluster index concerned (when the finding is about clusters). */
  firstCluster?: number;
  /** Number of consecutive clusters in this run (1 when not aggregated). */
  count: number;
  /** On-disk refcount vs references found, for refcount findings (of the first cluster). */
  refcount?: number;
  references?: number;
  referrers?: Referrer[];
  /** One plain-language sentence a non-expert understands. */
  explanation: string;
  /** The repair that would fix it (or why none can), in plain words. */
  fix: string;
  /** QEMU's line for it, when QEMU reports it (of the first item of the run). */
  qemuMessage?: string;
  /** True when QEMU does not report this (our extra diagnostics; counters unaffected). */
  beyondQemu?: boolean;
}

export interface CheckResult {
  filename: string;
  counters: QemuCounters;
  /** Set when the check could not complete (QEMU's "Check failed: ..."), with its reason. */
  failed?: string;
  /** The failure is one QEMU reports while opening the image ("Could not open '<file>': <reason>"). */
  failedAtOpen?: boolean;
  anomalies: Anomaly[];
  /** Host clusters examined (ceil(file size / cluster size), grown by references past EOF). */
  hostClusters: number;
  clusterSize: number;
  /** HostRole per host cluster, when asked for. */
  roleMap?: Uint8Array;
  /** GuestState per guest cluster, when asked for. */
  guestMap?: Uint8Array;
  /** Seconds the check took. */
  elapsed: number;
}
