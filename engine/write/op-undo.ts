// Backing out one failed operation exactly. While an operation runs, the table caches keep the
// pre-operation copy of every table it touches, and the writer's small state is saved. If the
// operation failed before writing any metadata to the disk (only guest data, or nothing), restoring
// those copies leaves memory as it was before, earlier operations' unflushed changes included, and
// the disk agrees with it (the new data clusters are unreferenced). Otherwise the writer reloads from disk.
import type { Qcow2Header } from '../format/header.js';
import type { Allocator } from './allocator.js';
import type { TableCache } from './table-cache.js';
import type { WriteCountingIO } from './write-counting-io.js';

/** The writer's state an operation may change in memory. */
export interface UndoableWriter {
  l1: Uint8Array;
  header: Qcow2Header;
  freeByteOffset: number;
  lastDecompressed: { off: number; data: Uint8Array } | null;
  readonly alloc: Allocator;
  readonly refCache: TableCache;
  readonly l2Cache: TableCache;
}

export class OpUndo {
  private readonly metadataWrites: number;
  private readonly l1: Uint8Array;
  private l1Copy: Uint8Array | null = null;
  private readonly header: Qcow2Header;
  private readonly freeByteOffset: number;
  private readonly lastDecompressed: UndoableWriter['lastDecompressed'];
  private readonly alloc: { hint: number; allocEnd: number; allocated: number };

  constructor(
    private readonly w: UndoableWriter,
    private readonly io: WriteCountingIO,
  ) {
    this.metadataWrites = io.metadataWrites;
    this.l1 = w.l1;
    this.header = { ...w.header };
    this.freeByteOffset = w.freeByteOffset;
    this.lastDecompressed = w.lastDecompressed;
    this.alloc = w.alloc.saveState();
    w.refCache.beginJournal();
    w.l2Cache.beginJournal();
  }

  /** Before the active L1 table changes in place. */
  noteL1(): void {
    if (this.l1Copy === null && this.w.l1 === this.l1) this.l1Copy = this.l1.slice();
  }

  /** Can the operation be backed out in memory alone? */
  get exact(): boolean {
    return (
      this.io.metadataWrites === this.metadataWrites &&
      this.w.refCache.journalComplete &&
      this.w.l2Cache.journalComplete
    );
  }

  /** Restore the state from before the operation (only when `exact`). */
  rollback(): void {
    const w = this.w;
    if (this.l1Copy) this.l1.set(this.l1Copy);
    w.l1 = this.l1;
    Object.assign(w.header, this.header);
    w.freeByteOffset = this.freeByteOffset;
    w.lastDecompressed = this.lastDecompressed;
    w.alloc.restoreState(this.alloc);
    w.refCache.rollbackJournal();
    w.l2Cache.rollbackJournal();
  }

  /** The operation is over (succeeded, or backed out otherwise): stop journaling. */
  end(): void {
    this.w.refCache.endJournal();
    this.w.l2Cache.endJournal();
  }
}
