/**
 * Opened images, each behind an opaque random handle. A session owns its read-only file and the
 * last check result (role map, guest map, anomalies) the map views draw from.
 */
import type { CheckResult } from '../check/types.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { ContractError } from '../contract/errors.js';

export interface Session {
  handle: string;
  /** Absolute path (never sent to a browser client). */
  path: string;
  name: string;
  io: PositionalIO;
  image: Qcow2Image;
  check?: CheckResult;
  /**
   * References the checker counted per host cluster (QEMU's IMRT), from the last check: exact below
   * 255 (and below the refcount width's maximum); a saturated count is recounted exactly by the
   * traversal when the inspector asks (service/referrers.ts).
   */
  references?: ArrayLike<number>;
  /** Counts per HostRole / GuestState of `check`'s maps. */
  hostLegend?: number[];
  guestLegend?: number[];
  /** Lazily built reverse index for cluster.describe (see referrers.ts). */
  cache: Map<string, unknown>;
}

/**
 * A file that could not be opened as an image (destroyed header, unreadable L1...): salvage reads
 * the file itself, so it only needs to know which file the user chose. No file stays open.
 */
export interface SalvageSource {
  handle: string;
  path: string;
  name: string;
}

/** At most this many images open at once per service; the oldest is closed to make room. */
export const MAX_SESSIONS = 16;

export function randomHandle(): string {
  const b = new Uint8Array(18);
  globalThis.crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[x & 63];
  return s;
}

export class Sessions {
  private map = new Map<string, Session>();
  private sources = new Map<string, SalvageSource>();

  /** Remember a file that failed to open, for salvage. */
  addSource(path: string, name: string): SalvageSource {
    if (this.sources.size >= MAX_SESSIONS) {
      const oldest = this.sources.keys().next().value;
      if (oldest !== undefined) this.sources.delete(oldest);
    }
    const s: SalvageSource = { handle: randomHandle(), path, name };
    this.sources.set(s.handle, s);
    return s;
  }

  /** The file behind an image handle or a salvage-source handle. */
  fileOf(handle: string): { path: string; name: string } {
    const src = this.sources.get(handle);
    if (src) return { path: src.path, name: src.name };
    const s = this.get(handle);
    return { path: s.path, name: s.name };
  }

  add(s: Omit<Session, 'handle' | 'cache'>): Session {
    if (this.map.size >= MAX_SESSIONS) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) void this.close(oldest);
    }
    const session: Session = { ...s, handle: randomHandle(), cache: new Map() };
    this.map.set(session.handle, session);
    return session;
  }

  get(handle: string): Session {
    const s = this.map.get(handle);
    if (!s)
      throw new ContractError('not-found', `no open image with handle ${handle}`, {
        field: 'args.handle',
        value: handle,
      });
    return s;
  }

  async close(handle: string): Promise<void> {
    this.sources.delete(handle);
    const s = this.map.get(handle);
    if (!s) return;
    this.map.delete(handle);
    await s.io.close().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    for (const h of [...this.map.keys()]) await this.close(h);
  }

  get size(): number {
    return this.map.size;
  }
}
