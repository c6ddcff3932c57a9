/**
 * What the planner's phases share: the image as it is, its reference walk, and the plan growing
 * phase by phase (pointer fixes, notes, refusals, clusters that must not be freed or reused).
 */
import { putU32 } from '../format/bytes.js';
import * as C from '../format/constants.js';
import type { Geometry, Qcow2Header } from '../format/header.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { FixNote, GuestRange, Refusal } from './plan.js';
import type { BadEntry, RefWalk } from './references.js';

export interface PlanOptions {
  mode: 'leaks' | 'all';
  /** Name shown in the plan (usually the path). */
  name?: string;
  /**
   * The checker's anomalies for the same image: problems we have no safe repair for (subcluster
   * bitmaps, snapshots with an external data file, invalid bitmaps, ...) become refusals, which also
   * stops the plan from freeing or lowering anything.
   */
  anomalies?: Array<{ kind: string; explanation: string }>;
  /**
   * Refuse instead of dropping a pointer to data nobody can read (an L2 entry whose data offset is
   * unaligned or past the end of the file). Off by default: such pointers are dropped, as QEMU's
   * repair would leave them unreadable anyway, and the undo journal keeps their bytes.
   */
  cautious?: boolean;
}

/** A new value for one 8-byte table entry, and why. */
export interface EntryFix {
  hi: number;
  lo: number;
  why: string;
}

/** A small header field rewrite (8-aligned, inside the first sector), applied in the relink phase. */
export interface HeaderFix {
  offset: number;
  bytes: Uint8Array;
  why: string;
}

export interface PlanContext {
  io: PositionalIO;
  opts: PlanOptions;
  /** -r all (else -r leaks). */
  all: boolean;
  originalLength: number;
  /** The image as it is (as the planner trusts it: see evidence.ts). */
  img: Qcow2Image;
  header: Qcow2Header;
  geo: Geometry;
  clusterSize: number;
  /** The reference walk of the image as it is. */
  walk: RefWalk;
  fixes: FixNote[];
  refusals: Refusal[];
  /** Clusters whose refcount is never lowered (lost tables and the data they map). */
  keep: Set<number>;
  /** Clusters never allocated for new structures (they may be something a refusal still needs). */
  reserved: Set<number>;
  /** Table entry address → its new value. */
  entryFix: Map<number, EntryFix>;
  headerFixes: HeaderFix[];
  /** Snapshot table entry index → restored L1 table fields. */
  snapshotL1Fix: Map<number, { l1TableOffset: number; l1Size: number }>;
  /** Set when a refused part may need clusters we cannot see: nothing is freed or lowered at all. */
  keepAllLeaks: boolean;
  /** Set when the refcount structure must be rebuilt whatever the counts say. */
  forceRebuild: boolean;
  corruptionsFixed: number;
  leaksFixed: number;
  /** Guest ranges whose data the damage destroyed (read as zeros or backing after the repair). */
  guestRangesLost: GuestRange[];
  /**
   * Guest clusters whose data pointer the damage took (redirected onto metadata, dropped as
   * unreadable, cleared to no offset): each may have orphaned the data cluster it pointed at.
   */
  pointersLost: number;
  /** Leaked clusters still holding data, which -r all frees unless a later phase re-links them. */
  orphanedData: number[];
  /** Compressed streams whose L2 entry is gone (lost-streams.ts): guest data lost at unknown places. */
  /** Per host cluster, the active uses the snapshot-share case names lost (orphaned-data.ts). */
  lostShareUses: Map<number, number>;
  lostStreams?: { clusters: number; bytes: number; hostOffsets: number[] };
}

export function newPlanContext(
  io: PositionalIO,
  opts: PlanOptions,
  originalLength: number,
  img: Qcow2Image,
  walk: RefWalk,
): PlanContext {
  return {
    io,
    opts,
    all: opts.mode === 'all',
    originalLength,
    img,
    header: img.header,
    geo: img.geo,
    clusterSize: img.clusterSize,
    walk,
    fixes: [],
    refusals: [],
    keep: new Set(),
    reserved: new Set(),
    entryFix: new Map(),
    headerFixes: [],
    snapshotL1Fix: new Map(),
    keepAllLeaks: false,
    forceRebuild: false,
    corruptionsFixed: 0,
    leaksFixed: 0,
    guestRangesLost: [],
    pointersLost: 0,
    orphanedData: [],
    lostShareUses: new Map(),
  };
}

/** A host offset as people read it. */
export const at = (o: number): string => `0x${o.toString(16)}`;

/** Where a bad entry sits, in words. */
export function whereIs(b: BadEntry): string {
  const table = b.kind.startsWith('l1') ? 'L1' : 'L2';
  return b.snapshotId !== undefined
    ? `snapshot ${b.snapshotId}'s ${table} table at ${at(b.table)}, entry ${b.index}`
    : `${table === 'L1' ? 'active L1 table' : 'L2 table'} at ${at(b.table)}, entry ${b.index}`;
}

/** An 8-byte big-endian entry from its two halves. */
export function entryBytes(hi: number, lo: number): Uint8Array {
  const b = new Uint8Array(8);
  putU32(b, 0, hi);
  putU32(b, 4, lo);
  return b;
}

/** The L2 table offset an L1 entry holds. */
export function l1EntryOffset(b: { hi: number; lo: number }): number {
  return (b.hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((b.lo & C.L1E_OFFSET_MASK_LO) >>> 0);
}
