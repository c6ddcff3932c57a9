/** What a handler file exports: functions keyed by contract method, run with a context. */
import type { ArgsOf, FileList, FileRef, HostKind, Method, ResultOf } from '../contract/contract.js';
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
  /** The served folder (serve only): inputs are opened and outputs created only under it, errors name paths relative to it. */
  root?: string;
  recent: RecentStore;
  /** The time budget of one check (serve: a hostile image cannot hold a worker for ever). */
  checkBudgetMs?: number;
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

/** The folder `path` must stay in when opened or written next to: the served root when it holds it. */
export function confinementOf(host: ServiceHost, path: string): string | undefined {
  if (host.root === undefined) return undefined;
  return path === host.root || path.startsWith(`${host.root}/`) ? host.root : undefined;
}

export type Handler<M extends Method> = (args: ArgsOf<M>, ctx: HandlerContext) => Promise<ResultOf<M>>;
export type HandlerTable = { [M in Method]?: Handler<M> };
