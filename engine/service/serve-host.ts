// The service host of `qcow2-doctor serve`: files are named relative to one root folder (plus the
// bundled samples), never by an absolute path. The WebSocket server and the service tests share it.
import { basename } from 'node:path';
import { RecentStore } from './recent.js';
import { RootResolver } from './root-resolver.js';
import type { ServiceHost } from './handler.js';

/** One check of one client's image may take this long (far beyond any real image's check). */
export const CHECK_BUDGET_MS = 30 * 60_000;

/** A host confined to `root`; `samples` maps sample names to their files. */
export async function createServeHost(root: string, samples: Map<string, string> = new Map()): Promise<ServiceHost> {
  const resolver = await RootResolver.create(root);
  const recent = new RecentStore();
  return {
    kind: 'serve',
    resolve: (ref) => resolver.resolve(ref, recent, samples),
    listFiles: (dir) => resolver.list(dir),
    mayRead: async (p) => (await resolver.mayRead(p)) || [...samples.values()].includes(p),
    samples: [...samples.keys()],
    rootName: basename(resolver.root),
    root: resolver.root,
    checkBudgetMs: CHECK_BUDGET_MS,
    recent,
  };
}
