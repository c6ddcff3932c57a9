/**
 * Phase 1 of the plan: entry-level problems the walk found. Entries with reserved bits, unaligned
 * preallocated zero clusters, COPIED on compressed clusters and flags without an offset are fixed in
 * place; damaged L1 pointers are handed to the relink phase; snapshot entries whose L1 table is
 * still there are restored; the rest is refused (or, for unreadable data pointers, dropped: see
 * dropped-pointers.ts).
 */
import * as C from '../format/constants.js';
import { hex64 } from '../format/bytes.js';
import { l2Offset } from '../format/l2-entry.js';
import { planCompressedFlagRestores } from './compressed-flag-restore.js';
import { planDroppedPointer } from './dropped-pointers.js';
import { planGarbageCompressed } from './garbage-compressed.js';
import { looksLikeSnapshotL1 } from './orphan-tables.js';
import { at, type PlanContext, whereIs } from './plan-context.js';
import type { FixNote } from './plan.js';
import type { BadEntry } from './references.js';

export interface EntryFixOutcome {
  /** Damaged active or snapshot L1 entries: re-link or refuse (relinks.ts). */
  relinkNeeded: BadEntry[];
  /** The active L1 table itself lies past the end of the file. */
  lostL1?: BadEntry;
}

export async function planEntryFixes(ctx: PlanContext): Promise<EntryFixOutcome> {
  const w = ctx.walk;
  const badByEntry = new Map<number, BadEntry[]>();
  for (const b of w.bad) {
    const l = badByEntry.get(b.entry);
    if (l) l.push(b);
    else badByEntry.set(b.entry, [b]);
    for (const c of b.qemuClusters) ctx.reserved.add(c);
  }
  const out: EntryFixOutcome = { relinkNeeded: [] };
  const restored = await planCompressedFlagRestores(ctx, badByEntry);
  for (const b of w.bad) {
    if (restored.has(b.entry)) continue;
    const alone = (badByEntry.get(b.entry) ?? []).length === 1;
    switch (b.kind) {
      case 'l1-reserved-bits':
      case 'l2-reserved-bits':
      case 'l2-prealloc-unaligned':
      case 'l2-compressed-copied':
      case 'l1-zero-offset':
        fixEntryInPlace(ctx, b, alone);
        break;
      case 'l1-unaligned':
      case 'l1-beyond-eof':
      case 'l1-into-metadata':
        out.relinkNeeded.push(b);
        break;
      case 'l1-table-beyond-eof':
        if (ctx.all && b.active) {
          out.lostL1 = b;
          break;
        }
        ctx.refusals.push({
          kind: b.kind,
          what: `${b.active ? 'the active' : `snapshot ${b.snapshotId ?? '?'}'s`} L1 table at ${at(b.table)} lies past the end of the file`,
          decide:
            'where the L1 table really is (leaked clusters that look like its L1/L2 tables are kept); restore header.l1_table_offset by hand',
        });
        break;
      case 'l2-data-unaligned':
      case 'l2-beyond-eof':
      case 'l2-compressed-beyond-eof':
        planDroppedPointer(ctx, b);
        break;
      case 'l2-compressed-into-metadata':
        await planGarbageCompressed(ctx, b);
        break;
      case 'l2-unsupported':
        ctx.refusals.push({
          kind: b.kind,
          what: `${whereIs(b)}: extended L2 entry ${hex64(b.hi, b.lo)} not repairable here`,
          decide: 'inspect the subcluster bitmap by hand',
        });
        ctx.keepAllLeaks = true;
        break;
      default:
        await fixSnapshotL1(ctx, b);
    }
  }
  return out;
}

/** Fixes that keep the mapping QEMU uses (or make an already unreadable range read as zeros). */
function fixEntryInPlace(ctx: PlanContext, b: BadEntry, alone: boolean): void {
  if (!ctx.all) return;
  const where = whereIs(b);
  const fix = (hi: number, lo: number, why: string, note: Omit<FixNote, 'kind' | 'counts'>): void => {
    ctx.entryFix.set(b.entry, { hi, lo, why });
    ctx.fixes.push({ kind: b.kind, counts: 'corruption', ...note });
    ctx.corruptionsFixed++;
  };
  switch (b.kind) {
    case 'l1-reserved-bits':
    case 'l2-reserved-bits': {
      if (!alone) return;
      const l1 = b.kind === 'l1-reserved-bits';
      const hi = (b.hi & ~(l1 ? C.L1E_RESERVED_MASK_HI : C.L2E_STD_RESERVED_MASK_HI)) >>> 0;
      const lo = (b.lo & ~(l1 ? C.L1E_RESERVED_MASK_LO : C.L2E_STD_RESERVED_MASK_LO)) >>> 0;
      fix(
        hi,
        lo,
        `${where}: clear reserved bits (${hex64(b.hi, b.lo)} → ${hex64(hi, lo)}); the mapping QEMU uses is unchanged`,
        {
          differsFromQemu: true,
          text: `${where}: reserved bits cleared (${hex64(b.hi, b.lo)} → ${hex64(hi, lo)}); QEMU leaves this error in place`,
        },
      );
      return;
    }
    case 'l2-prealloc-unaligned': {
      const off = l2Offset(b.hi, b.lo);
      fix(
        0,
        ctx.geo.extendedL2 ? 0 : 1,
        `${where}: preallocated zero cluster at unaligned ${at(off)} becomes a plain zero cluster`,
        {
          qemuLine: `Repairing offset=${off.toString(16)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          text: `${where}: unaligned preallocated zero cluster turned into a plain zero cluster (reads stay zero)`,
        },
      );
      return;
    }
    case 'l2-compressed-copied': {
      if (!alone) return;
      fix(
        (b.hi & ~C.OFLAG_COPIED_HI) >>> 0,
        b.lo,
        `${where}: clear OFLAG_COPIED, never valid on a compressed cluster`,
        {
          differsFromQemu: true,
          text: `${where}: copied flag cleared on a compressed cluster; QEMU leaves this error in place`,
        },
      );
      return;
    }
    default: // l1-zero-offset
      fix(
        0,
        0,
        `${where}: flags without an offset (${hex64(b.hi, b.lo)}) cleared; the range already reads as unallocated`,
        {
          differsFromQemu: true,
          text: `${where} held flags but no offset (${hex64(b.hi, b.lo)}); cleared — QEMU reads that range as unallocated already, but its check counts cluster 0 as an L2 table`,
        },
      );
  }
}

/**
 * A damaged snapshot entry: its own L1 table is usually still there (the cluster an unaligned offset
 * falls in, with the size its disk size implies for an absurd size). Accept it only if that cluster
 * is leaked and reads as an L1 table whose tables lack exactly such references; else refuse and keep
 * every cluster.
 */
async function fixSnapshotL1(ctx: PlanContext, b: BadEntry): Promise<void> {
  const { walk: w, clusterSize: cs, geo } = ctx;
  const sn = w.snapshots[b.index];
  if (ctx.all && sn && b.kind !== 'snapshot-l1-beyond-eof') {
    const off = Math.floor(sn.l1TableOffset / cs) * cs;
    const size =
      b.kind === 'snapshot-l1-too-large' ? Math.ceil((sn.diskSize ?? ctx.header.size) / geo.l1Coverage) : sn.l1Size;
    if (size * 8 <= cs && (await looksLikeSnapshotL1(ctx.img, w, off / cs, size))) {
      ctx.snapshotL1Fix.set(b.index, { l1TableOffset: off, l1Size: size });
      const change =
        b.kind === 'snapshot-l1-too-large'
          ? `size 0x${sn.l1Size.toString(16)} → ${size} (from its disk size)`
          : `offset ${at(sn.l1TableOffset)} → ${at(off)}`;
      ctx.fixes.push({
        kind: 'snapshot-l1-restored',
        counts: 'corruption',
        differsFromQemu: true,
        text: `snapshot ${sn.id} (${sn.name}): L1 table ${change}; that leaked cluster still reads as its L1 table — QEMU would free the snapshot's clusters and leave the broken entry`,
      });
      ctx.corruptionsFixed++;
      return;
    }
  }
  ctx.keepAllLeaks = true;
  const what =
    b.kind === 'snapshot-l1-too-large'
      ? 'L1 table size too large'
      : b.kind === 'snapshot-l1-unaligned'
        ? 'L1 table offset not cluster aligned'
        : 'L1 table beyond the end of the file';
  ctx.refusals.push({
    kind: b.kind,
    what: `snapshot ${b.snapshotId ?? '?'}: ${what}`,
    decide:
      'delete the snapshot (qemu-img snapshot -d) or restore its entry; its clusters are kept until then (QEMU frees them while leaving the entry, which breaks the snapshot)',
  });
}
