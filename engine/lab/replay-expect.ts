// What guest data a crash state of a replayed log may hold. A replayed log has no guest model (it
// comes from another writer), so the model is read from the log itself: the guest disk as every
// prefix of the log shows it. A sector may hold the value it had at the last completed flush, or
// any value it takes at a later prefix of the same flush epoch, nothing else.
import type { WriteLogEntry } from '../io/recording-io.js';
import type { MemoryIO } from '../io/memory-io.js';
import type { PositionalIO } from '../io/positional-io.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { type BackingGuest, Qcow2Writer } from '../write/writer.js';
import type { CrashState, CrashStateBuilder } from './crash-states.js';

const SECTOR = 512;

export type OpenBacking = (name: string, format?: string) => Promise<BackingGuest | undefined>;

const READ_CHUNK = 1 << 20;

/**
 * The guest disk of the image in `io` (at most `limit` bytes of it), read-only, into `into` (grown
 * when too small). Read 1 MiB at a time into one reused buffer: fresh memory costs a page fault per
 * 4 KiB, more than the reading itself.
 */
export async function readGuest(
  io: PositionalIO,
  openBacking: OpenBacking | undefined,
  limit: number,
  into?: Uint8Array,
): Promise<{ virtualSize: number; bytes: Uint8Array }> {
  const img = await Qcow2Image.open(io);
  const name = img.header.backingFile;
  const backing = name && openBacking ? await openBacking(name, img.header.backingFormat) : undefined;
  const r = await Qcow2Writer.open(io, { readOnly: true, ...(backing ? { backing } : {}) });
  const n = Math.min(r.virtualSize, limit);
  const out = into && into.length >= n ? into : new Uint8Array(n);
  for (let o = 0; o < n; o += READ_CHUNK) out.set(await r.read(o, Math.min(READ_CHUNK, n - o)), o);
  return { virtualSize: r.virtualSize, bytes: out.subarray(0, n) };
}

interface Epoch {
  /** Sectors whose value at the epoch's start differs from the base guest. */
  durable: Map<number, Buffer>;
  /** Other values each sector takes at later prefixes of the epoch. */
  later: Map<number, Buffer[]>;
  sizes: Set<number>;
}

const sectorOf = (b: Uint8Array, s: number): Buffer => {
  const a = s * SECTOR;
  if (a >= b.length) return Buffer.alloc(SECTOR);
  const out = Buffer.alloc(SECTOR);
  out.set(b.subarray(a, Math.min(b.length, a + SECTOR)));
  return out;
};

const view = (x: Uint8Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.length);
const CHUNK = 128 * SECTOR;

/**
 * Sectors whose bytes differ between `a` and `b` (bytes past either end read as zeros), in order.
 * Compares 64 KiB at a time first: nearly all of a guest disk is the same from one state to the next.
 */
function differingSectors(a: Uint8Array, b: Uint8Array): number[] {
  const A = view(a);
  const B = view(b);
  const out: number[] = [];
  const n = Math.ceil(Math.max(a.length, b.length) / SECTOR);
  for (let c = 0; c < n * SECTOR; c += CHUNK) {
    const end = c + CHUNK;
    if (end <= A.length && end <= B.length && A.compare(B, c, end, c, end) === 0) continue;
    for (let s = c / SECTOR; s < Math.min(n, end / SECTOR); s++) {
      const o = s * SECTOR;
      const same =
        o + SECTOR <= A.length && o + SECTOR <= B.length
          ? A.compare(B, o, o + SECTOR, o, o + SECTOR) === 0
          : sectorOf(a, s).equals(sectorOf(b, s));
      if (!same) out.push(s);
    }
  }
  return out;
}

export class GuestExpectations {
  private readonly epochs = new Map<number, Epoch>();
  private readonly flushes: number[] = [];
  private baseGuest!: Uint8Array;
  private scratch: Uint8Array = new Uint8Array(0);
  /** The guest at the start of the epoch being computed (reused: see readGuest). */
  private startBuf: Uint8Array = new Uint8Array(0);
  /** Prefixes whose image could not be read: they add no values. */
  readonly unreadablePrefixes: number[] = [];

  constructor(
    private readonly log: readonly WriteLogEntry[],
    private readonly builder: CrashStateBuilder,
    private readonly openBacking: OpenBacking | undefined,
    readonly limit: number,
  ) {
    log.forEach((e, i) => {
      if (e.kind === 'flush') this.flushes.push(i);
    });
  }

  private async prefixGuest(p: number) {
    let lastFlush = -1;
    for (const f of this.flushes) if (f < p) lastFlush = f;
    const applied: number[] = [];
    for (let i = lastFlush + 1; i < p; i++) if (this.log[i]!.kind !== 'flush') applied.push(i);
    const io: MemoryIO = await this.builder.build({ kind: 'prefix', crashAt: p, lastFlush, applied });
    try {
      const g = await readGuest(io, this.openBacking, this.limit, this.scratch);
      this.scratch = g.bytes.buffer === this.scratch.buffer ? this.scratch : new Uint8Array(g.bytes.buffer);
      return g;
    } catch {
      this.unreadablePrefixes.push(p);
      return undefined;
    }
  }

  private async epoch(lastFlush: number): Promise<Epoch> {
    const known = this.epochs.get(lastFlush);
    if (known) return known;
    if (!this.baseGuest) this.baseGuest = (await this.prefixGuest(0))?.bytes.slice() ?? new Uint8Array(0);
    const next = this.flushes.find((f) => f > lastFlush) ?? this.log.length;
    const ep: Epoch = { durable: new Map(), later: new Map(), sizes: new Set() };
    const start = await this.prefixGuest(lastFlush + 1);
    let startBytes = this.baseGuest;
    if (start) {
      if (this.startBuf.length < start.bytes.length) this.startBuf = new Uint8Array(start.bytes.length);
      this.startBuf.set(start.bytes);
      startBytes = this.startBuf.subarray(0, start.bytes.length);
    }
    if (start) ep.sizes.add(start.virtualSize);
    this.diff(this.baseGuest, startBytes, (s, v) => ep.durable.set(s, v));
    for (let p = lastFlush + 2; p <= next; p++) {
      const g = await this.prefixGuest(p);
      if (!g) continue;
      ep.sizes.add(g.virtualSize);
      this.diff(startBytes, g.bytes, (s, v) => {
        const vals = ep.later.get(s) ?? [];
        if (!vals.some((x) => x.equals(v))) vals.push(v);
        ep.later.set(s, vals);
      });
    }
    this.epochs.set(lastFlush, ep);
    return ep;
  }

  private diff(a: Uint8Array, b: Uint8Array, on: (sector: number, value: Buffer) => void): void {
    for (const s of differingSectors(a, b)) on(s, sectorOf(b, s));
  }

  /** Check the guest of a crash state; returns the number of sectors holding a value they may not hold. */
  async check(io: PositionalIO, state: CrashState, details: string[]): Promise<number> {
    const ep = await this.epoch(state.lastFlush);
    let g: { virtualSize: number; bytes: Uint8Array };
    try {
      g = await readGuest(io, this.openBacking, this.limit, this.scratch);
      if (g.bytes.buffer !== this.scratch.buffer) this.scratch = new Uint8Array(g.bytes.buffer);
    } catch (e) {
      details.push(`data: cannot read the guest disk: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    }
    let bad = 0;
    if (ep.sizes.size > 0 && !ep.sizes.has(g.virtualSize)) {
      details.push(`data: virtual size ${g.virtualSize}, never one of ${[...ep.sizes].join(', ')} in this epoch`);
      bad++;
    }
    // Candidates: sectors that differ from the base guest, and those the epoch's start changed.
    const n = Math.ceil(g.bytes.length / SECTOR);
    const candidates = new Set(differingSectors(g.bytes, this.baseGuest.subarray(0, g.bytes.length)));
    for (const s of ep.durable.keys()) if (s < n) candidates.add(s);
    for (const s of [...candidates].sort((x, y) => x - y)) {
      const want = ep.durable.get(s);
      const v = sectorOf(g.bytes, s);
      if (want === undefined && v.equals(sectorOf(this.baseGuest, s))) continue;
      if ((want && v.equals(want)) || ep.later.get(s)?.some((x) => x.equals(v))) continue;
      bad++;
      if (bad <= 3)
        details.push(
          `data: guest sector ${s} (0x${(s * SECTOR).toString(16)}) holds neither its value at the last flush nor a later one`,
        );
    }
    return bad;
  }
}
