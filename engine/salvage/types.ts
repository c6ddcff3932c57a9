// The salvage's data model: what reconstruction found and what the report says.
import type { SalvagedBytes } from '../contract/salvage-results.js';

/** Where one L2 table sits in the guest disk, and how sure we are. */
export interface L2Placement {
  l1Index: number;
  /** Host offset of the L2 table. */
  host: number;
  /** l1: an L1 entry points at it (the active L1, or a snapshot's in a snapshot's disk);
   * evidence: a structure in its data records its own guest offset (GPT, MBR, NTFS, ext4, LVM);
   * only-slot: the one table left for the one slot left in a disk of known size (certain);
   * snapshot-match: shares data with a snapshot's L2 at that index; inherited: the active disk
   * still shares the newest snapshot's L2; ordering: host-order guess. */
  source: 'l1' | 'evidence' | 'only-slot' | 'snapshot-match' | 'inherited' | 'ordering';
  /** 0..1. 1 = certain (read from surviving metadata, or pinned by evidence); below 1 = a guess. */
  confidence: number;
  /** What pinned it, for source 'evidence'. */
  evidence?: string;
}

export interface LostL2 {
  l1Index: number;
  /** Where the L1 entry pointed (0 when the entry itself is unreadable). */
  host: number;
  reason: string;
}

/** What an empty entry of one disk is taken to have held. */
export interface SharedEntry {
  host: number;
  /** true: read it back; false: the range is reported lost (it may have held `host`). */
  certain: boolean;
  evidence: string;
  /** The entry held a compressed stream at `host` (this descriptor), not a whole cluster. */
  compressed?: { hi: number; lo: number };
}

/** One disk that can be exported: the active disk or one internal snapshot. */
export interface GuestView {
  kind: 'active' | 'snapshot';
  /** "active" or the snapshot's ID. */
  id: string;
  name: string;
  virtualSize: number;
  /** Where its L1 came from. */
  l1Source: 'header' | 'scan' | 'snapshot-table' | 'none';
  l1Offset?: number;
  /** Placements by L1 index (sparse). */
  l2: Map<number, L2Placement>;
  lostL2: LostL2[];
  /** Guest cluster → the cluster its empty entry held, by another disk's mapping and the refcounts. */
  shared?: Map<number, SharedEntry>;
  /** Live L2 tables whose L1 entry was lost, left out: their data (bytes) belongs in some free L1 slot. */
  unplaced?: { tables: number[]; bytes: number };
  /** Placed L1 slots whose table holds an L1 table's content: each empty entry there is lost (l1-copy-tables.ts). */
  l1Copies?: Map<number, string>;
  /** Per placed L1 slot, the entries a live copy-on-write copy of its table (referenced by no L1) changed:
   * the disk's newer data there is in that copy, not in the slot's table (see stale-slots.ts). */
  stale?: Map<number, Set<number>>;
  /** The free L1 slots tables were placed into by guess: the ones left empty may be where one belongs. */
  guessHomes?: Set<number>;
  /** Live data clusters no table maps (their L2 entries were lost): their guest place is unknown. */
  unplacedData?: { clusters: number; bytes: number };
}

export interface Reconstruction {
  clusterBits: number;
  clusterSize: number;
  clusterSizeSource: 'header' | 'inferred' | 'user';
  extendedL2: boolean;
  /** undefined: unknown, detected per stream (zstd frames carry a magic). */
  compressionType?: number;
  virtualSize: number;
  virtualSizeSource: 'header' | 'header-damaged' | 'snapshot-table' | 'guest-gpt' | 'guessed' | 'user';
  backingFile?: string;
  backingFormat?: string;
  /** The header is too damaged to say whether the image had a backing file (and none was given). */
  backingUnknown?: boolean;
  views: GuestView[];
  structures: {
    header: 'intact' | 'damaged' | 'missing';
    headerDamage?: string;
    activeL1?: { offset: number; source: 'header' | 'scan'; state: 'valid' | 'damaged' | 'lost' };
    snapshotTable?: { offset: number; source: 'header' | 'scan'; entries: number };
    l1Tables: number[];
    l2Tables: number;
    refcountTables: number[];
    refcountBlocks: number;
    /** L2-like tables used by no view (stale copies, or guest data that looks like a table). */
    unusedL2Tables: number[];
  };
  guesses: string[];
  warnings: string[];
  /** Host cluster index → the metadata surviving structures prove it holds (never guest data). */
  metadata?: Map<number, string>;
  /** Present once the disks were exported (or measured with --dry-run). */
  outcome?: SalvageOutcome;
}

export interface LostRange {
  start: number;
  end: number;
  reason: string;
}

export interface ViewReport {
  kind: 'active' | 'snapshot';
  id: string;
  name: string;
  virtualSize: number;
  l1Source: string;
  l1Offset?: number;
  output?: string;
  format?: 'raw' | 'qcow2';
  l2Tables: L2Placement[];
  bytes: SalvagedBytes;
  lost: LostRange[];
  /** Fraction of recovered bytes placed from surviving metadata. */
  confidence: number;
  /** How each mapped guest range was placed, in guest order. */
  placement: PlacedRange[];
}

/** A guest range mapped by L2 tables placed the same way. */
export interface PlacedRange {
  start: number;
  end: number;
  /** from-l1: the active L1; from-snapshot-l1: the snapshot's own L1 (or, for the active disk, a
   * snapshot's L1 it still shares); by-evidence: a structure in the data records its position;
   * by-elimination: the only table left for the only slot left; by-guess: see confidence. */
  how: 'from-l1' | 'from-snapshot-l1' | 'by-evidence' | 'by-elimination' | 'by-guess';
  /** 1 when certain. */
  confidence: number;
  detail: string;
}

/** The salvage's verdict: its exit status and its words, the same in the CLI, JSON and the app. */
export interface SalvageOutcome {
  /** 0: every recovered byte at a certain position, nothing lost; 2: guest ranges lost; 4: some
   * recovered bytes placed by guess; 6: both. */
  exitCode: 0 | 2 | 4 | 6;
  /** Bytes lost and bytes placed by guess, over the exported disks. */
  lost: number;
  guessed: number;
  /** The least sure guessed placement among them (present when something was guessed). */
  guessConfidence?: number;
  words: string;
}

export interface SalvageReport {
  image: string;
  fileSize: number;
  clusterSize: number;
  clusterSizeSource: string;
  virtualSize: number;
  virtualSizeSource: string;
  extendedL2: boolean;
  compression: string;
  header: string;
  headerDamage?: string;
  backing?: { file: string; format?: string; found: boolean; report?: SalvageReport };
  scan: { clusters: number; complete: boolean; counts: Record<string, number>; capped: boolean };
  structures: Reconstruction['structures'];
  /** Every disk the salvage can export (the active one and each recovered snapshot). */
  disks: Array<{ kind: 'active' | 'snapshot'; id: string; name: string; virtualSize: number }>;
  views: ViewReport[];
  /** Unreferenced non-zero clusters copied out (--lost-found). */
  lostFound?: {
    file: string;
    clusters: number;
    bytes: number;
    runs: Array<{ host: number; length: number; at: number }>;
    runsCapped: boolean;
  };
  guesses: string[];
  warnings: string[];
  /** Present once the disks were exported (or measured with --dry-run). */
  outcome?: SalvageOutcome;
}
