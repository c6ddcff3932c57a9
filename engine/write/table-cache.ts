// A cache of whole metadata tables (L2 tables or refcount blocks) with QEMU's ordering attributes
// (block/qcow2-cache.c): a dirty table is written back only after the cache it depends on has been
// written *and flushed*, or after a plain flush when `dependsOnFlush` is set (data before the L2
// entry that maps it). That gives one flush per write-back batch instead of one per update.
import type { PositionalIO } from '../io/positional-io.js';

/** How the write path orders its metadata updates. */
export type WriteOrdering =
  /** Dependencies and barriers as QEMU keeps them (the default). */
  | 'ordered'
  /** Negative control: no dependencies, no barriers except an explicit guest flush. */
  | 'unordered'
  /** Baseline for the bench: every metadata update is written and flushed at once. */
  | 'writethrough';

/** What a cache needs from the writer: the disk, the ordering policy and a counted flush. */
export interface CacheHost {
  readonly io: PositionalIO;
  readonly ordering: WriteOrdering;
  /** A barrier the ordering requires (a no-op when unordered). */
  barrier(): Promise<void>;
  /** Barriers issued so far (to know whether a write-back has been made durable yet). */
  readonly barriers: number;
  event(name: string): void;
  /** Refuse a write-back that would land on metadata of another kind (overlap guard). */
  guardWrite?(offset: number, length: number, cache: string): Promise<void>;
}

interface Entry {
  buf: Uint8Array;
  dirty: boolean;
}

export class TableCache {
  private readonly entries = new Map<number, Entry>();
  /** Before any entry is written back, this cache must be written and flushed. */
  depends: TableCache | null = null;
  /** Before any entry is written back, a flush must be issued. */
  dependsOnFlush = false;
  /** host.barriers at the time of the last write-back (-1: none since the last barrier). */
  private writtenAt = -1;
  /**
   * During an operation: each table it touched, as it was before (null: not cached), and the
   * dependency flags, so that a failed operation can be backed out (op-undo.ts). Bounded by the
   * capacity: past it the journal gives up and the writer reloads from disk instead.
   */
  private journal: { tables: Map<number, Entry | null>; depends: TableCache | null; dependsOnFlush: boolean } | null =
    null;
  private journalOverflow = false;

  constructor(
    readonly name: string,
    private readonly host: CacheHost,
    private readonly tableSize: number,
    /** Most tables kept; beyond it the least recently used is written back and dropped. */
    private readonly capacity: number,
    private readonly loadEvent: string,
    private readonly updateEvent: string,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get dirtyCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.dirty) n++;
    return n;
  }

  has(offset: number): boolean {
    return this.entries.has(offset);
  }

  /** The table at `offset`, read from disk on a miss. The buffer stays valid until the next await. */
  async get(offset: number): Promise<Uint8Array> {
    this.note(offset);
    const hit = this.entries.get(offset);
    if (hit) {
      this.entries.delete(offset);
      this.entries.set(offset, hit); // most recently used last
      return hit.buf;
    }
    this.host.event(this.loadEvent);
    const got = await this.host.io.read(offset, this.tableSize);
    const buf = new Uint8Array(this.tableSize);
    buf.set(got);
    await this.makeRoom();
    this.entries.set(offset, { buf, dirty: false });
    return buf;
  }

  /** Install a new table (e.g. a freshly allocated L2 table), dirty. */
  async put(offset: number, buf: Uint8Array): Promise<void> {
    this.note(offset);
    await this.makeRoom();
    this.entries.set(offset, { buf, dirty: true });
    if (this.host.ordering === 'writethrough') await this.flush();
  }

  async markDirty(offset: number): Promise<void> {
    const e = this.entries.get(offset);
    if (!e) throw new Error(`${this.name} cache: table 0x${offset.toString(16)} is not cached`);
    this.note(offset);
    e.dirty = true;
    if (this.host.ordering === 'writethrough') await this.flush();
  }

  /** Forget a table without writing it (its cluster was freed). */
  discard(offset: number): void {
    this.note(offset);
    this.entries.delete(offset);
  }

  /** Forget everything, dirty or not (after a failed operation the writer reloads from disk). */
  clear(): void {
    this.entries.clear();
    this.depends = null;
    this.dependsOnFlush = false;
  }

  beginJournal(): void {
    this.journal = { tables: new Map(), depends: this.depends, dependsOnFlush: this.dependsOnFlush };
    this.journalOverflow = false;
  }

  endJournal(): void {
    this.journal = null;
    this.journalOverflow = false;
  }

  /** Every table the operation touched has its earlier state in the journal. */
  get journalComplete(): boolean {
    return this.journal !== null && !this.journalOverflow;
  }

  /** Put back every table the operation touched as it was before, and the dependency flags. */
  rollbackJournal(): void {
    const j = this.journal;
    if (!j) return;
    for (const [off, was] of j.tables) {
      if (!was) {
        this.entries.delete(off);
        continue;
      }
      const e = this.entries.get(off);
      if (e) {
        e.buf.set(was.buf);
        e.dirty = was.dirty;
      } else {
        this.entries.set(off, was);
      }
    }
    this.depends = j.depends;
    this.dependsOnFlush = j.dependsOnFlush;
    this.endJournal();
  }

  /** Before a table changes (or is loaded, installed, dropped) during an operation: keep its earlier state. */
  private note(offset: number): void {
    const j = this.journal;
    if (!j || this.journalOverflow || j.tables.has(offset)) return;
    if (j.tables.size >= this.capacity) {
      this.journalOverflow = true;
      return;
    }
    const e = this.entries.get(offset);
    j.tables.set(offset, e ? { buf: e.buf.slice(), dirty: e.dirty } : null);
  }

  /**
   * Record that this cache's tables may be written back only after `dep` is durable. As in QEMU,
   * dependencies never chain: an existing dependency of either side is resolved first.
   */
  async setDependency(dep: TableCache): Promise<void> {
    if (this.host.ordering !== 'ordered') return;
    if (dep.depends) await dep.flushDependency();
    if (this.depends && this.depends !== dep) await this.flushDependency();
    this.depends = dep;
  }

  /** Data written directly must be durable before this cache's next write-back. */
  setDependsOnFlush(): void {
    if (this.host.ordering !== 'unordered') this.dependsOnFlush = true;
  }

  private async flushDependency(): Promise<void> {
    const d = this.depends;
    if (d) await d.flush();
    this.depends = null;
    this.dependsOnFlush = false;
  }

  private async writeEntry(offset: number, e: Entry): Promise<void> {
    if (!e.dirty) return;
    if (this.depends) await this.flushDependency();
    else if (this.dependsOnFlush) {
      await this.host.barrier();
      this.dependsOnFlush = false;
    }
    await this.host.guardWrite?.(offset, e.buf.length, this.name);
    this.host.event(this.updateEvent);
    await this.host.io.write(offset, e.buf);
    e.dirty = false;
    this.writtenAt = this.host.barriers;
  }

  /** Write back every dirty table (honouring dependencies), without a final flush. */
  async writeBack(): Promise<void> {
    // Ascending offsets: sequential writes.
    const offs = [...this.entries.keys()].sort((a, b) => a - b);
    for (const off of offs) {
      const e = this.entries.get(off);
      if (e) await this.writeEntry(off, e);
    }
  }

  /** Write back every dirty table, then a barrier. */
  async flush(): Promise<void> {
    await this.writeBack();
    // Written back since the last barrier (now or earlier): make it durable.
    if (this.writtenAt === this.host.barriers) await this.host.barrier();
  }

  private async makeRoom(): Promise<void> {
    while (this.entries.size >= this.capacity) {
      // Least recently used: first in insertion order. Clean entries go first.
      let victim: number | undefined;
      for (const [off, e] of this.entries) {
        if (!e.dirty) {
          victim = off;
          break;
        }
      }
      if (victim === undefined) {
        victim = this.entries.keys().next().value as number;
        await this.writeEntry(victim, this.entries.get(victim)!);
      }
      this.entries.delete(victim);
    }
  }
}
