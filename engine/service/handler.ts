/** What a handler file exports: functions keyed by contract method, run with a context. */
import type { ArgsOf, FileList, FileRef, HostKind, Method, ResultOf } from '../contract/contract.js';
import { ContractError } from '../contract/errors.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';
import type { RecentStore } from './recent.js';
import type { Sessions } from './session.js';

/** What the hosting process (Electron's engine host, `serve`, a test) provides to the handlers. */
export interface ServiceHost {
  kind: HostKind;
  /** Turn a FileRef into an absolute path to read, or throw ContractError('access-denied' | 'not-available' | 'not-found'). */
  resolve(ref: FileRef): Promise<{ path: string; name: string; location?: string }>;
  /** List a directory of the served root (serve only). */
  listFiles?(dir: string | undefined): Promise<FileList>;
  /** May this absolute path be read as a backing file? (serve: only inside the root). Default yes. */
  mayRead?(path: string): Promise<boolean>;
  samples: string[];
  rootName?: string;
  recent: RecentStore;
  /** Tests only: each check waits this long (in cancellable steps) before checking. */
  testCheckDelayMs?: number;
}

export interface HandlerContext {
  host: ServiceHost;
  sessions: Sessions;
  progress: ProgressSink;
  cancel: CancelToken;
  /** Methods with a real handler in this service. */
  available: () => Method[];
}

export type Handler<M extends Method> = (args: ArgsOf<M>, ctx: HandlerContext) => Promise<ResultOf<M>>;
export type HandlerTable = { [M in Method]?: Handler<M> };

const NOT_AVAILABLE = Symbol('not-available');

/** A placeholder handler for a request whose implementation lands later (another issue). */
export function notAvailable<M extends Method>(method: M, issue: string): Handler<M> {
  const h = (async () => {
    throw new ContractError('not-available', `${method} is not available yet (${issue})`);
  }) as Handler<M> & { [NOT_AVAILABLE]?: true };
  h[NOT_AVAILABLE] = true;
  return h;
}

export function isAvailable(h: unknown): boolean {
  return typeof h === 'function' && !(h as { [NOT_AVAILABLE]?: true })[NOT_AVAILABLE];
}
