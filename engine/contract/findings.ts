// The vocabulary of a check's findings: QEMU's counters and our anomaly records. Shared by the engine
// (which produces them) and the renderer (which shows them), so it lives below both.

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
  /** For kind 'lost-table': the orphaned table (at firstCluster) and the data it still maps. */
  lostTable?: LostTableInfo;
}

/** An orphaned table that still maps data (nothing refers to it; QEMU counts its clusters as leaks). */
export interface LostTableInfo {
  table: 'l2' | 'l1' | 'snapshot-table';
  /** Data clusters the table maps (an L1: through its lost L2 tables), and how many nothing else maps. */
  dataClusters: number;
  unreferencedDataClusters: number;
  /** Bytes of those data clusters that nothing else maps (the data at risk). */
  bytesAtRisk: number;
  compressedEntries: number;
  /** The data clusters as runs of host clusters. */
  dataRanges: { start: number; count: number }[];
  /** L2 tables an L1 table points at. */
  l2Tables?: number;
  /** Where the table belongs, when certain: L1 slot and guest byte range (of the disk of the L1 holding it). */
  l1Index?: number;
  guestStart?: number;
  guestLength?: number;
  /** How that place is known: held by a lost L1 table at that slot, the only free L1 slot, or a snapshot's L1. */
  placedBy?: 'lost-l1' | 'only-free-slot' | 'snapshot-l1';
  /** The lost L1 table that holds it (host cluster). */
  viaL1?: number;
}
