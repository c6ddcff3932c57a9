// The salvage results the app shows: the scan, the preview of what will be recovered, lost and guessed,
// the export and the assessment. Re-exported by contract.ts.
import type { SavedOutput } from './contract.js';

export interface SalvageScanResult {
  recoverable: number;
  lost: number;
  summary: string;
  /** The active disk's numbers for the wizard's preview. */
  preview?: SalvagePreview;
}
/** A salvaged disk's guest bytes by where they came from (the salvage report and the wizard's preview). */
export interface SalvagedBytes {
  /** Guest bytes read from data clusters of this image. */
  recovered: number;
  /** Of which through compressed clusters. */
  compressed: number;
  /** Guest bytes that are zero by the metadata (unallocated without backing, zero flag). */
  zero: number;
  /** Guest bytes taken from the backing file. */
  backing: number;
  /** Guest bytes that should come from a backing file that is missing (written as zeros). */
  backingMissing: number;
  /** Guest bytes lost (written as zeros). */
  lost: number;
  /** Recovered bytes whose position was guessed (placements with confidence < 1). */
  guessed: number;
}

export interface SalvagePreview {
  header: 'intact' | 'damaged' | 'missing';
  headerDamage?: string;
  clusterSize: number;
  clusterSizeSource: string;
  virtualSize: number;
  virtualSizeSource: string;
  bytes: SalvagedBytes;
  /** Fraction of recovered bytes placed from surviving metadata (1 = nothing guessed). */
  confidence: number;
  /** How sure the least sure guessed table placement is (0..1), when any was guessed. */
  guessedConfidence?: number;
  l2Tables: number;
  l2Guessed: number;
  /** Guest ranges written as zeros (at most 100). */
  lostRanges: Array<{ start: number; end: number; reason: string }>;
  lostRangesMore: number;
  guesses: string[];
  warnings: string[];
  /** Internal snapshots found (only the active disk is exported here). */
  snapshots: number;
  /** The header is lost, and with it whether the image had a backing file: `bytes.backingMissing` are
   * the unallocated bytes that would read from it, if there was one (ask the user; `noBacking`). */
  backingUnknown: boolean;
  /** The verdict, as `qcow2-doctor salvage` words it: status 0 (every position certain, nothing
   * lost), 2 (ranges lost), 4 (some data placed by guess), 6 (both). */
  outcome: { exitCode: 0 | 2 | 4 | 6; words: string };
  /** How each mapped guest range was placed (at most 100): from an L1 table, by evidence in the
   * data, by elimination, or by guess with a confidence below 1. */
  placement: Array<{
    start: number;
    end: number;
    how: 'from-l1' | 'from-snapshot-l1' | 'by-evidence' | 'by-elimination' | 'by-guess';
    confidence: number;
    detail: string;
  }>;
  placementMore: number;
}
export interface SalvageExportResult extends SavedOutput {
  /** An opened handle on the salvaged qcow2 (for repair.verify, the maps, a report); absent for raw. */
  handle?: string;
  preview?: SalvagePreview;
  /** The salvage report written next to the output. */
  reportName?: string;
}
export interface SalvageAssessment {
  /** Leaked clusters that look like L2 tables, and the leaked clusters they point at. */
  orphanTables: number;
  orphanData: number;
  /** Leaked clusters looked at (capped). */
  examined: number;
  /** Plain words when salvage should come before any repair. */
  advice?: string;
}
