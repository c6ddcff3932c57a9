/**
 * The engine service: validates each request against the contract, dispatches it to the handler
 * table (one file per area under handlers/), relays progress, honours cancels, and turns every
 * thrown error into a typed WireError. Hosts: Electron's engine host process, `qcow2-doctor serve`,
 * tests. One Service per host; one Connection per client (window or WebSocket).
 */
import {
  METHODS,
  parseClientMessage,
  validateArgs,
  type ArgsOf,
  type Method,
  type ResultOf,
  type ServerMessage,
  type WireError,
} from '../contract/contract.js';
import { ContractError, toWireError } from '../contract/errors.js';
import type { HandlerContext, HandlerTable, ServiceHost } from './handler.js';
import { CancelToken, type ProgressEvent } from '../base/task-control.js';
import { Sessions } from './session.js';
import { scrubPaths } from './path-scrub.js';
import { handlers as app } from './handlers/app.js';
import { handlers as image } from './handlers/image.js';
import { handlers as check } from './handlers/check.js';
import { handlers as map } from './handlers/map.js';
import { handlers as triage } from './handlers/triage.js';
import { handlers as recovery } from './handlers/recovery.js';
import { handlers as report } from './handlers/report.js';
import { handlers as salvage } from './handlers/salvage.js';
import { handlers as history } from './handlers/history.js';

export type { ServiceHost } from './handler.js';

export const ALL_HANDLERS: HandlerTable = {
  ...app,
  ...image,
  ...check,
  ...map,
  ...triage,
  ...recovery,
  ...report,
  ...salvage,
  ...history,
};

/** Progress events are relayed at most this often per request (the last one always goes). */
const PROGRESS_INTERVAL_MS = 50;

export class Service {
  readonly sessions = new Sessions();

  constructor(
    readonly host: ServiceHost,
    private readonly table: HandlerTable = ALL_HANDLERS,
  ) {}

  /** Methods with a real handler in this build. */
  available(): Method[] {
    return METHODS.filter((m) => typeof this.table[m] === 'function');
  }

  /** Validate and run one request. */
  async call<M extends Method>(
    method: M,
    rawArgs: unknown,
    opts: { progress?: (p: ProgressEvent) => void; cancel?: CancelToken } = {},
  ): Promise<ResultOf<M>> {
    const args = validateArgs(method, rawArgs);
    const handler = this.table[method];
    if (!handler) throw new ContractError('not-available', `${method} has no handler`);
    const ctx: HandlerContext = {
      host: this.host,
      sessions: this.sessions,
      progress: opts.progress ?? (() => undefined),
      cancel: opts.cancel ?? new CancelToken(),
      available: () => this.available(),
    };
    ctx.cancel.throwIfCancelled();
    return (handler as (a: ArgsOf<M>, c: HandlerContext) => Promise<ResultOf<M>>)(args, ctx);
  }

  /** A client connection: feed it parsed messages; it answers through `send`. */
  connect(send: (m: ServerMessage) => void): Connection {
    return new Connection(this, send);
  }

  async dispose(): Promise<void> {
    await this.sessions.closeAll();
  }
}

export class Connection {
  private running = new Map<number, CancelToken>();
  private opened = new Set<string>();
  private closed = false;

  constructor(
    private readonly service: Service,
    private readonly send: (m: ServerMessage) => void,
  ) {}

  /** Handle one message from the client (already decoded from its transport). */
  receive(raw: unknown): void {
    let msg;
    try {
      msg = parseClientMessage(raw);
    } catch (err) {
      const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
      this.reply({ t: 'res', id, ok: false, error: toWireError(err) });
      return;
    }
    if (msg.t === 'cancel') {
      this.running.get(msg.id)?.cancel();
      return;
    }
    if (this.running.has(msg.id)) {
      this.reply({
        t: 'res',
        id: msg.id,
        ok: false,
        error: { code: 'invalid-argument', message: `request id ${msg.id} is already running` },
      });
      return;
    }
    const cancel = new CancelToken();
    this.running.set(msg.id, cancel);
    const id = msg.id;
    let last = 0;
    let pending: ProgressEvent | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = (): void => {
      timer = undefined;
      if (pending && !this.closed && this.running.has(id)) this.reply({ t: 'progress', id, progress: pending });
      pending = undefined;
      last = Date.now();
    };
    const progress = (p: ProgressEvent): void => {
      pending = { fraction: Math.max(0, Math.min(1, p.fraction)), stage: p.stage };
      if (Date.now() - last >= PROGRESS_INTERVAL_MS) flush();
      else timer ??= setTimeout(flush, PROGRESS_INTERVAL_MS);
    };
    const method = msg.method;
    this.service.call(method, msg.args, { progress, cancel }).then(
      (result) => {
        // Images opened through this connection are closed with it (a reloaded page leaks nothing).
        const h = (result as { handle?: unknown }).handle;
        const opens = (method === 'image.open' || method === 'salvage.export') && typeof h === 'string';
        if (opens) this.opened.add(h);
        if (this.closed && opens) void this.service.sessions.close(h);
        this.finish(id, timer, { t: 'res', id, ok: true, result });
      },
      (err: unknown) =>
        this.finish(id, timer, {
          t: 'res',
          id,
          ok: false,
          error: cancel.isCancelled ? { code: 'cancelled', message: 'cancelled' } : this.wireError(err),
        }),
    );
  }

  /** The error as the client sees it: under a served root, no server path crosses. */
  private wireError(err: unknown): WireError {
    const w = toWireError(err);
    const root = this.service.host.root;
    if (root !== undefined) w.message = scrubPaths(w.message, root);
    return w;
  }

  /** The client went away: cancel whatever it started and close the images it opened. */
  close(): void {
    this.closed = true;
    for (const c of this.running.values()) c.cancel();
    this.running.clear();
    for (const h of this.opened) void this.service.sessions.close(h);
    this.opened.clear();
  }

  private finish(id: number, timer: ReturnType<typeof setTimeout> | undefined, m: ServerMessage): void {
    if (timer) clearTimeout(timer);
    this.running.delete(id);
    this.reply(m);
  }

  private reply(m: ServerMessage): void {
    if (this.closed) return;
    try {
      this.send(m);
    } catch {
      // The transport is gone; nothing to tell.
    }
  }
}
