import type { PositionalIO } from './positional-io.js';

/** errno names the fault backend can inject (the two qemu-iotests use). */
export type FaultErrno = 'EIO' | 'ENOSPC';

/**
 * A rule like a blkdebug `[inject-error]` section: when the writer announces `event`, the rule
 * becomes active and the following request(s) fail.
 */
export interface FaultRule {
  /** blkdebug event name, e.g. 'l2_alloc_write' (see engine/write/events.ts). */
  event: string;
  /** 'error': requests fail with `errno`. 'crash': power is lost — nothing more reaches the disk. */
  action?: 'error' | 'crash';
  errno?: FaultErrno;
  /** Deactivate after the first failed request (blkdebug `once=on`). Default true. */
  once?: boolean;
  /** Which requests fail: writes and flushes (default) or every request including reads. */
  requests?: 'writes' | 'all';
}

/** An injected I/O error, shaped like Node's system errors (code = errno name). */
export class InjectedIOError extends Error {
  readonly code: FaultErrno;
  constructor(
    readonly errno: FaultErrno,
    readonly event: string,
    op: string,
  ) {
    super(
      `${errno === 'EIO' ? 'Input/output error' : 'No space left on device'} (injected after event ${event}, on ${op})`,
    );
    this.name = 'InjectedIOError';
    this.code = errno;
  }
}

/** Power was cut: the backend refuses every further request. */
export class CrashedError extends Error {
  constructor(readonly event: string) {
    super(`simulated crash after event ${event}`);
    this.name = 'CrashedError';
  }
}

/**
 * A PositionalIO wrapper that injects faults at named events. Requests before the event pass
 * through; after it, according to the armed rule, the next request(s) fail (error) or everything
 * stops (crash: the wrapped backend keeps exactly what had been written before).
 */
export class FaultIO implements PositionalIO {
  private armed: FaultRule | null = null;
  private crashedAt: string | null = null;
  /** Events announced so far, in order. */
  readonly seen: string[] = [];
  /** Faults injected so far. */
  injected = 0;

  constructor(
    readonly inner: PositionalIO,
    private rules: FaultRule[] = [],
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  get crashed(): boolean {
    return this.crashedAt !== null;
  }

  setRules(rules: FaultRule[]): void {
    this.rules = rules;
    this.armed = null;
  }

  event(name: string): void {
    this.seen.push(name);
    const rule = this.rules.find((r) => r.event === name);
    if (rule && !this.armed) this.armed = rule;
    this.inner.event?.(name);
  }

  private gate(op: string, isWrite: boolean): void {
    if (this.crashedAt !== null) throw new CrashedError(this.crashedAt);
    const r = this.armed;
    if (!r) return;
    if (!isWrite && (r.requests ?? 'writes') === 'writes') return;
    if ((r.action ?? 'error') === 'crash') {
      this.crashedAt = r.event;
      this.injected++;
      throw new CrashedError(r.event);
    }
    if (r.once ?? true) {
      this.armed = null;
      this.rules = this.rules.filter((x) => x !== r);
    }
    this.injected++;
    throw new InjectedIOError(r.errno ?? 'EIO', r.event, op);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.gate(`read ${offset}+${length}`, false);
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.gate(`write ${offset}+${data.length}`, true);
    return this.inner.write(offset, data);
  }

  async flush(): Promise<void> {
    this.gate('flush', true);
    return this.inner.flush();
  }

  async size(): Promise<number> {
    if (this.crashedAt !== null) throw new CrashedError(this.crashedAt);
    return this.inner.size();
  }

  async truncate(size: number): Promise<void> {
    this.gate(`truncate ${size}`, true);
    return this.inner.truncate(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
