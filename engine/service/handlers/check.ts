// check.run (progress + cancel), anomalies.list, anomalies.ranges.
import { existsSync } from 'node:fs';
import { runCheckPasses, toCheckResult } from '../../check/index.js';
import { checkInWorker } from '../../check/worker-client.js';
import { FileIO } from '../../io/file-io.js';
import { GUEST_STATE_NAMES, HOST_ROLE_COUNT, HostRole } from '../../contract/roles.js';
import type { Anomaly, Severity } from '../../check/types.js';
import type { AnomalyPage, CheckSummary } from '../../contract/contract.js';
import { ContractError } from '../../contract/errors.js';
import type { HandlerContext, HandlerTable } from '../handler.js';
import type { Session } from '../session.js';

const GUEST_STATE_COUNT = Object.keys(GUEST_STATE_NAMES).length;
const SEVERITY_CODE: Record<Severity, number> = { info: 1, warning: 2, leak: 3, error: 4 };

/** Counts per code of a role/state map (codes past `n` are counted in a grown array). */
export function legendOf(map: Uint8Array | undefined, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  if (!map) return counts;
  const c = new Float64Array(256);
  for (let i = 0; i < map.length; i++) c[map[i]!]!++;
  let top = n;
  for (let k = 255; k >= n; k--)
    if (c[k]) {
      top = k + 1;
      break;
    }
  return Array.from(c.subarray(0, top));
}

/**
 * The role map as the map shows it: the checker's array has slack past the end of the file (room
 * for references just past EOF); cells past both the examined clusters and the last non-free
 * role are not clusters of the file and are cut off.
 */
export function trimRoleMap(roleMap: Uint8Array | undefined, hostClusters: number): Uint8Array | undefined {
  if (!roleMap) return undefined;
  let end = roleMap.length;
  while (end > hostClusters && roleMap[end - 1] === HostRole.Free) end--;
  return end === roleMap.length ? roleMap : roleMap.subarray(0, end);
}

/** Tests only: wait `ms` in small cancellable steps, reporting progress. */
export async function testDelay(ms: number, ctx: HandlerContext): Promise<void> {
  const steps = Math.max(1, Math.ceil(ms / 20));
  for (let i = 0; i < steps; i++) {
    ctx.cancel.throwIfCancelled();
    ctx.progress({ fraction: (i / steps) * 0.5, stage: 'waiting (test delay)' });
    await new Promise((r) => setTimeout(r, ms / steps));
  }
  ctx.cancel.throwIfCancelled();
}

export function checkedSession(
  ctx: HandlerContext,
  handle: string,
): Session & { check: NonNullable<Session['check']> } {
  const s = ctx.sessions.get(handle);
  if (!s.check)
    throw new ContractError('not-found', 'no check result yet for this image: run check.run first', {
      field: 'args.handle',
      value: handle,
    });
  return s as Session & { check: NonNullable<Session['check']> };
}

/**
 * The check of an untrusted image runs in a worker thread, never on the thread that answers every
 * client: a hostile image (a decompression bomb, a pathological table) can only slow its own
 * request, and the time budget stops it. The worker reads the session's own open file through
 * /proc/self/fd (worker threads share descriptors), so a path swapped since the open changes nothing.
 * Images that are not plain files (a salvaged copy in memory) are checked here.
 */
async function runCheck(s: Session, ctx: HandlerContext, maps: { roleMap: boolean; guestMap: boolean }) {
  const fd = s.io instanceof FileIO ? s.io.fd : undefined;
  if (fd !== undefined && existsSync(`/proc/self/fd/${fd}`)) {
    const { references, ...r } = await checkInWorker(`/proc/self/fd/${fd}`, {
      ...maps,
      wantReferences: true,
      onProgress: ctx.progress,
      cancel: ctx.cancel,
      ...(ctx.host.checkBudgetMs ? { timeoutMs: ctx.host.checkBudgetMs } : {}),
    });
    if (references) s.references = references;
    else delete s.references;
    return { ...r, filename: s.name };
  }
  const t0 = performance.now();
  const analysis = await runCheckPasses(s.image, { ...maps, onProgress: ctx.progress, cancel: ctx.cancel });
  s.references = analysis.references;
  return toCheckResult(s.name, analysis, (performance.now() - t0) / 1000);
}

export const handlers: HandlerTable = {
  'check.run': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    if (ctx.host.testCheckDelayMs) await testDelay(ctx.host.testCheckDelayMs, ctx);
    const result = await runCheck(s, ctx, { roleMap: args.roleMap ?? true, guestMap: args.guestMap ?? true });
    ctx.cancel.throwIfCancelled();
    const roles = trimRoleMap(result.roleMap, result.hostClusters);
    if (roles) result.roleMap = roles;
    s.check = result;
    s.cache.clear();
    s.hostLegend = legendOf(result.roleMap, HOST_ROLE_COUNT);
    s.guestLegend = legendOf(result.guestMap, GUEST_STATE_COUNT);
    const severities: Record<Severity, number> = { error: 0, leak: 0, warning: 0, info: 0 };
    for (const a of result.anomalies) severities[a.severity] = (severities[a.severity] ?? 0) + 1;
    const summary: CheckSummary = {
      counters: result.counters,
      hostClusters: result.hostClusters,
      guestClusters: result.guestMap?.length ?? Math.ceil(s.image.virtualSize / s.image.clusterSize),
      clusterSize: result.clusterSize,
      anomalyCount: result.anomalies.length,
      hostLegend: s.hostLegend,
      guestLegend: s.guestLegend,
      severities,
      elapsed: result.elapsed,
    };
    if (result.failed !== undefined) summary.failed = result.failed;
    ctx.progress({ fraction: 1, stage: 'done' });
    return summary;
  },
  'anomalies.list': async (args, ctx) => {
    const s = checkedSession(ctx, args.handle);
    const all = s.check.anomalies;
    const filtered = all.filter(
      (a) =>
        (args.kind === undefined || a.kind === args.kind) &&
        (args.severity === undefined || a.severity === args.severity),
    );
    const byKindMap = new Map<string, { kind: string; severity: Severity; records: number; clusters: number }>();
    for (const a of all) {
      const k = byKindMap.get(a.kind) ?? { kind: a.kind, severity: a.severity, records: 0, clusters: 0 };
      k.records++;
      k.clusters += a.firstCluster === undefined ? 0 : a.count;
      byKindMap.set(a.kind, k);
    }
    const offset = args.offset ?? 0;
    const page: AnomalyPage = {
      total: filtered.length,
      offset,
      items: filtered.slice(offset, offset + (args.limit ?? 100)),
      byKind: [...byKindMap.values()].sort(
        (a, b) => SEVERITY_CODE[b.severity] - SEVERITY_CODE[a.severity] || b.records - a.records,
      ),
    };
    return page;
  },
  'anomalies.ranges': async (args, ctx) => {
    const s = checkedSession(ctx, args.handle);
    const withCluster = s.check.anomalies.filter((a: Anomaly) => a.firstCluster !== undefined);
    const first = new Float64Array(withCluster.length);
    const count = new Float64Array(withCluster.length);
    const severity = new Uint8Array(withCluster.length);
    withCluster.forEach((a, i) => {
      first[i] = a.firstCluster!;
      count[i] = Math.max(1, a.count);
      severity[i] = SEVERITY_CODE[a.severity] ?? 1;
    });
    return { first, count, severity };
  },
};
