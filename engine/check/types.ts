import type { CancelToken, ProgressSink } from '../base/task-control.js';

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

export type { Anomaly, QemuCounters, Referrer, Severity } from '../contract/findings.js';
import type { Anomaly, QemuCounters } from '../contract/findings.js';

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
