/**
 * One client of the contract for both hosts: Electron (the preload's message pipe on
 * window.qcow2doctor) and the browser (`qcow2-doctor serve`'s WebSocket). Requests get ids,
 * progress events are routed to their caller, an AbortSignal sends a cancel, and errors are
 * rebuilt as typed ContractErrors.
 */
import {
  ContractError,
  type ArgsOf,
  type CallOptions,
  type ClientMessage,
  type ContractClient,
  type Method,
  type Notice,
  type PreloadBridge,
  type ResultOf,
  type ServerMessage,
} from '../../../engine/contract/contract.js';
import { decodeMessage, encodeMessage } from '../../../engine/contract/wire.js';

/** A bidirectional message pipe (the transport). */
export interface Pipe {
  send(m: ClientMessage): void;
  onMessage(listener: (m: ServerMessage) => void): void;
  /** Resolves once usable; rejects when the connection fails. */
  ready: Promise<void>;
  onClose(listener: (reason: string) => void): void;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onProgress?: CallOptions['onProgress'];
}

export class Client implements ContractClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private notices = new Set<(n: Notice) => void>();
  private closedReason: string | undefined;

  constructor(private readonly pipe: Pipe) {
    pipe.onMessage((m) => this.dispatch(m));
    pipe.onClose((reason) => {
      this.closedReason = reason;
      for (const p of this.pending.values())
        p.reject(new ContractError('io', `connection to the engine lost: ${reason}`));
      this.pending.clear();
    });
  }

  get ready(): Promise<void> {
    return this.pipe.ready;
  }

  call<M extends Method>(method: M, args: ArgsOf<M>, opts: CallOptions = {}): Promise<ResultOf<M>> {
    if (this.closedReason !== undefined)
      return Promise.reject(new ContractError('io', `connection to the engine lost: ${this.closedReason}`));
    const id = this.nextId++;
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const entry: Pending = { resolve: resolve as (v: unknown) => void, reject };
      if (opts.onProgress) entry.onProgress = opts.onProgress;
      this.pending.set(id, entry);
      if (opts.signal) {
        if (opts.signal.aborted) {
          this.pending.delete(id);
          reject(new ContractError('cancelled', 'cancelled'));
          return;
        }
        opts.signal.addEventListener('abort', () => this.pending.has(id) && this.pipe.send({ t: 'cancel', id }), {
          once: true,
        });
      }
      this.pipe.send({ t: 'req', id, method, args } as ClientMessage);
    });
  }

  onNotice(listener: (n: Notice) => void): () => void {
    this.notices.add(listener);
    return () => this.notices.delete(listener);
  }

  private dispatch(m: ServerMessage): void {
    if (m.t === 'notice') {
      for (const l of this.notices) l(m.notice);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.t === 'progress') {
      p.onProgress?.(m.progress);
      return;
    }
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(ContractError.fromWire(m.error));
  }
}

/** The pipe over Electron's preload bridge. */
export function preloadPipe(bridge: PreloadBridge): Pipe {
  return {
    send: (m) => bridge.send(m),
    onMessage: (l) => void bridge.onMessage(l),
    ready: Promise.resolve(),
    onClose: () => undefined,
  };
}

/** The pipe over `serve`'s WebSocket (token from the page URL). */
export function webSocketPipe(url: string): Pipe {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const listeners: Array<(m: ServerMessage) => void> = [];
  const closeListeners: Array<(r: string) => void> = [];
  const ready = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener(
      'error',
      () => reject(new ContractError('io', 'could not connect to the engine (is the URL and its token right?)')),
      { once: true },
    );
  });
  ws.addEventListener('message', (ev: MessageEvent) => {
    const m = decodeMessage(ev.data as string | ArrayBuffer) as ServerMessage;
    for (const l of listeners) l(m);
  });
  ws.addEventListener('close', (ev: CloseEvent) => {
    for (const l of closeListeners) l(ev.reason || `closed (${ev.code})`);
  });
  return {
    send: (m) => ws.send(encodeMessage(m)),
    onMessage: (l) => void listeners.push(l),
    ready,
    onClose: (l) => void closeListeners.push(l),
  };
}

/** Pick the transport: the preload bridge when running in Electron, else the WebSocket of `serve`. */
export function connect(): { client: Client; host: 'electron' | 'browser' } {
  const bridge = (globalThis as { qcow2doctor?: PreloadBridge }).qcow2doctor;
  if (bridge) return { client: new Client(preloadPipe(bridge)), host: 'electron' };
  const token = new URLSearchParams(location.search).get('token') ?? '';
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    client: new Client(webSocketPipe(`${proto}//${location.host}/ws?token=${encodeURIComponent(token)}`)),
    host: 'browser',
  };
}
