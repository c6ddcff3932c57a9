// map.host, map.guest, cluster.describe.
import { HOST_ROLE_NAMES, HostRole } from '../../contract/roles.js';
import type { Anomaly } from '../../check/types.js';
import { ContractError } from '../../contract/errors.js';
import type { HandlerTable } from '../handler.js';
import { clusterReferences } from '../referrers.js';
import { checkedSession } from './check.js';
import { guestLayersOf } from './guest-layers.js';

export const handlers: HandlerTable = {
  'map.host': async (args, ctx) => {
    const s = checkedSession(ctx, args.handle);
    if (!s.check.roleMap)
      throw new ContractError('not-found', 'the last check did not build a role map', {
        field: 'args.handle',
        value: args.handle,
      });
    return {
      clusterSize: s.check.clusterSize,
      hostClusters: s.check.roleMap.length,
      roles: s.check.roleMap,
      hostLegend: s.hostLegend ?? [],
    };
  },
  'map.guest': async (args, ctx) => {
    const s = checkedSession(ctx, args.handle);
    if (!s.check.guestMap)
      throw new ContractError('not-found', 'the last check did not build a guest map', {
        field: 'args.handle',
        value: args.handle,
      });
    return {
      clusterSize: s.check.clusterSize,
      guestClusters: s.check.guestMap.length,
      states: s.check.guestMap,
      guestLegend: s.guestLegend ?? [],
      ...(await guestLayersOf(s, ctx)),
    };
  },
  'cluster.describe': async (args, ctx) => {
    const s = ctx.sessions.get(args.handle);
    const cs = s.image.clusterSize;
    const hostClusters = Math.max(s.check?.roleMap?.length ?? 0, Math.ceil(s.image.fileSize / cs));
    if (args.cluster >= hostClusters)
      throw new ContractError(
        'invalid-argument',
        `cluster ${args.cluster} is past the end of the map (${hostClusters} clusters)`,
        { field: 'args.cluster', value: String(args.cluster) },
      );
    const role = s.check?.roleMap?.[args.cluster] ?? HostRole.Free;
    let refcount: number | null;
    try {
      refcount = await s.image.refcount(args.cluster);
    } catch {
      refcount = null;
    }
    const refs = await clusterReferences(s.image, args.cluster, {
      list: args.referrers !== false,
      cancel: ctx.cancel,
      ...(s.references && args.cluster < s.references.length ? { checked: s.references[args.cluster]! } : {}),
    });
    // The findings on this cluster, and the lost table whose data it is (its leak is then no mere leak).
    const anomalies: Anomaly[] = (s.check?.anomalies ?? [])
      .filter(
        (a) =>
          (a.firstCluster !== undefined &&
            args.cluster >= a.firstCluster &&
            args.cluster < a.firstCluster + Math.max(1, a.count)) ||
          mapsCluster(a, args.cluster),
      )
      .slice(0, 50);
    return {
      cluster: args.cluster,
      offset: args.cluster * cs,
      role,
      roleName: HOST_ROLE_NAMES[role] ?? `role ${role}`,
      refcount,
      ...refs,
      anomalies,
      beyondEof: args.cluster * cs >= s.image.fileSize,
    };
  },
};

/** A lost table that still maps `cluster` as data. */
function mapsCluster(a: Anomaly, cluster: number): boolean {
  if (a.kind !== 'lost-table' || !a.lostTable) return false;
  return a.lostTable.dataRanges.some((r) => cluster >= r.start && cluster < r.start + r.count);
}
