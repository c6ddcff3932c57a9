/**
 * Make the repair plan (pure with respect to the image: reads only, writes nothing).
 *
 *  1. Walk the image (references.ts) and decide the pointer fixes: entries with reserved bits,
 *     unaligned preallocated zero clusters, orphaned L2 tables to re-link, cross-links to resolve by
 *     copying, incomplete snapshot entries. What would need a guess is refused and reported.
 *  2. Lay those fixes over the image (OverlayIO) and walk again: the final reference counts.
 *  3. Turn "refcounts on disk → final counts" into ordered writes, in place or as a rebuilt refcount
 *     structure placed only in clusters free in the old structure *and* in both reference maps.
 *  4. OFLAG_COPIED from the final counts; dirty and corrupt bits last.
 */
import * as C from '../format/constants.js';
import { hex64, putU32, putU64, u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l2Offset } from '../format/l2-entry.js';
import { maxRefcount, setRefcount } from '../format/refcount.js';
import { encodeSnapshotEntry } from '../format/snapshot.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import { OverlayIO } from './overlay-io.js';
import { PlanBuilder } from './plan-builder.js';
import type { FixNote, Refusal, RepairPlan } from './plan.js';
import { walkReferences, type BadEntry, type Ref, type RefWalk } from './references.js';

export interface PlanOptions {
  mode: 'leaks' | 'all';
  /** Name shown in the plan (usually the path). */
  name?: string;
  /**
   * The checker's anomalies for the same image: problems we have no safe repair for (subcluster
   * bitmaps, snapshots with an external data file, invalid bitmaps, ...) become refusals, which also
   * stops the plan from freeing or lowering anything.
   */
  anomalies?: Array<{ kind: string; explanation: string }>;
}

/** Checker anomaly kinds with no repair here (and none in QEMU). */
const UNREPAIRABLE_KINDS = new Set([
  'compressed-with-data-file',
  'compressed-with-bitmap',
  'subcluster-bitmap-corrupt',
  'unallocated-with-bitmap',
  'snapshots-with-data-file',
  'bitmap-invalid',
]);

interface Copy {
  kind: 'data' | 'l2';
  from: number;
  to: number;
  entries: number[];
  why: string;
  /** The bytes written to the new cluster (an L2 copy has its COPIED flags cleared: its data is now shared). */
  content?: Uint8Array;
}

const u64be = (hi: number, lo: number): Uint8Array => {
  const b = new Uint8Array(8);
  putU32(b, 0, hi);
  putU32(b, 4, lo);
  return b;
};

export async function planRepair(io: PositionalIO, opts: PlanOptions): Promise<RepairPlan> {
  const all = opts.mode === 'all';
  const len0 = await io.size();
  const img0 = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const h = img0.header;
  const cs = img0.clusterSize;
  const geo = img0.geo;
  const E = geo.refcountBlockEntries;
  const w0 = await walkReferences(img0);
  const fixes: FixNote[] = [];
  const refusals: Refusal[] = [];
  const keep = new Set<number>();
  let keepAllLeaks = false;
  const reserved = new Set<number>(); // never allocate here
  const entryFix = new Map<number, { hi: number; lo: number; why: string }>();
  let corruptionsFixed = 0;
  let leaksFixed = 0;

  const at = (o: number): string => `0x${o.toString(16)}`;
  const where = (b: BadEntry): string =>
    b.snapshotId !== undefined
      ? `snapshot ${b.snapshotId}'s ${b.kind.startsWith('l1') ? 'L1' : 'L2'} table at ${at(b.table)}, entry ${b.index}`
      : `${b.kind.startsWith('l1') ? 'active L1 table' : 'L2 table'} at ${at(b.table)}, entry ${b.index}`;

  // --- 1. entry-level problems -------------------------------------------------------------------
  const badByEntry = new Map<number, BadEntry[]>();
  for (const b of w0.bad) {
    const l = badByEntry.get(b.entry);
    if (l) l.push(b);
    else badByEntry.set(b.entry, [b]);
    for (const c of b.qemuClusters) reserved.add(c);
  }
  const relinkNeeded: BadEntry[] = [];
  let lostL1: BadEntry | undefined;
  const snapFix = new Map<number, { l1TableOffset: number; l1Size: number }>();
  /** Small header field rewrites (8-aligned, inside the first sector), applied in the relink phase. */
  const headerFixes: Array<{ offset: number; bytes: Uint8Array; why: string }> = [];
  for (const b of w0.bad) {
    const alone = (badByEntry.get(b.entry) ?? []).length === 1;
    switch (b.kind) {
      case 'l1-reserved-bits':
      case 'l2-reserved-bits': {
        if (!all || !alone) break;
        const l1 = b.kind === 'l1-reserved-bits';
        const hi = (b.hi & ~(l1 ? C.L1E_RESERVED_MASK_HI : C.L2E_STD_RESERVED_MASK_HI)) >>> 0;
        const lo = (b.lo & ~(l1 ? C.L1E_RESERVED_MASK_LO : C.L2E_STD_RESERVED_MASK_LO)) >>> 0;
        entryFix.set(b.entry, {
          hi,
          lo,
          why: `${where(b)}: clear reserved bits (${hex64(b.hi, b.lo)} → ${hex64(hi, lo)}); the mapping QEMU uses is unchanged`,
        });
        fixes.push({
          kind: b.kind,
          counts: 'corruption',
          differsFromQemu: true,
          text: `${where(b)}: reserved bits cleared (${hex64(b.hi, b.lo)} → ${hex64(hi, lo)}); QEMU leaves this error in place`,
        });
        corruptionsFixed++;
        break;
      }
      case 'l2-prealloc-unaligned': {
        if (!all) break;
        const off = l2Offset(b.hi, b.lo);
        entryFix.set(b.entry, {
          hi: 0,
          lo: geo.extendedL2 ? 0 : 1,
          why: `${where(b)}: preallocated zero cluster at unaligned ${at(off)} becomes a plain zero cluster`,
        });
        fixes.push({
          kind: b.kind,
          counts: 'corruption',
          qemuLine: `Repairing offset=${off.toString(16)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          text: `${where(b)}: unaligned preallocated zero cluster turned into a plain zero cluster (reads stay zero)`,
        });
        corruptionsFixed++;
        break;
      }
      case 'l2-compressed-copied': {
        if (!all || !alone) break;
        const hi = (b.hi & ~C.OFLAG_COPIED_HI) >>> 0;
        entryFix.set(b.entry, {
          hi,
          lo: b.lo,
          why: `${where(b)}: clear OFLAG_COPIED, never valid on a compressed cluster`,
        });
        fixes.push({
          kind: b.kind,
          counts: 'corruption',
          differsFromQemu: true,
          text: `${where(b)}: copied flag cleared on a compressed cluster; QEMU leaves this error in place`,
        });
        corruptionsFixed++;
        break;
      }
      case 'l1-unaligned':
      case 'l1-beyond-eof':
      case 'l1-into-metadata':
        relinkNeeded.push(b);
        break;
      case 'l1-zero-offset': {
        if (!all) break;
        entryFix.set(b.entry, {
          hi: 0,
          lo: 0,
          why: `${where(b)}: flags without an offset (${hex64(b.hi, b.lo)}) cleared; the range already reads as unallocated`,
        });
        fixes.push({
          kind: b.kind,
          counts: 'corruption',
          differsFromQemu: true,
          text: `${where(b)} held flags but no offset (${hex64(b.hi, b.lo)}); cleared — QEMU reads that range as unallocated already, but its check counts cluster 0 as an L2 table`,
        });
        corruptionsFixed++;
        break;
      }
      case 'l1-table-beyond-eof':
        if (all && b.active) {
          lostL1 = b;
          break;
        }
        refusals.push({
          kind: b.kind,
          what: `${b.active ? 'the active' : `snapshot ${b.snapshotId ?? '?'}'s`} L1 table at ${at(b.table)} lies past the end of the file`,
          decide:
            'where the L1 table really is (leaked clusters that look like its L1/L2 tables are kept); restore header.l1_table_offset by hand',
        });
        break;
      case 'l2-data-unaligned':
        refusals.push({
          kind: b.kind,
          what: `${where(b)} maps guest data to unaligned host offset ${at(l2Offset(b.hi, b.lo))}`,
          decide:
            'which cluster the data really is in (QEMU would count the two clusters it straddles); restore the entry by hand or clear it (that range then reads as zeros/backing)',
        });
        break;
      case 'l2-beyond-eof':
      case 'l2-compressed-beyond-eof':
        refusals.push({
          kind: b.kind,
          what: `${where(b)} points past the end of the file (${hex64(b.hi, b.lo)})`,
          decide:
            'whether a leaked cluster is the data it lost (leaked clusters are kept), or to clear the entry (that range then reads as zeros/backing)',
        });
        break;
      case 'l2-unsupported':
        refusals.push({
          kind: b.kind,
          what: `${where(b)}: extended L2 entry ${hex64(b.hi, b.lo)} not repairable here`,
          decide: 'inspect the subcluster bitmap by hand',
        });
        keepAllLeaks = true;
        break;
      default: {
        // snapshot-l1-*
        const sn = w0.snapshots[b.index];
        if (all && sn && b.kind !== 'snapshot-l1-beyond-eof') {
          // The snapshot's own L1 table is usually still there: the cluster the offset falls in (an
          // unaligned offset), with the size its disk size implies (an absurd size). Accept it only if
          // that cluster is leaked and reads as an L1 table whose tables lack exactly such references.
          const off = Math.floor(sn.l1TableOffset / cs) * cs;
          const size =
            b.kind === 'snapshot-l1-too-large' ? Math.ceil((sn.diskSize ?? h.size) / geo.l1Coverage) : sn.l1Size;
          if (size * 8 <= cs && (await looksLikeSnapshotL1(img0, w0, off / cs, size))) {
            snapFix.set(b.index, { l1TableOffset: off, l1Size: size });
            fixes.push({
              kind: 'snapshot-l1-restored',
              counts: 'corruption',
              differsFromQemu: true,
              text: `snapshot ${sn.id} (${sn.name}): L1 table ${b.kind === 'snapshot-l1-too-large' ? `size 0x${sn.l1Size.toString(16)} → ${size} (from its disk size)` : `offset ${at(sn.l1TableOffset)} → ${at(off)}`}; that leaked cluster still reads as its L1 table — QEMU would free the snapshot's clusters and leave the broken entry`,
            });
            corruptionsFixed++;
            break;
          }
        }
        keepAllLeaks = true;
        refusals.push({
          kind: b.kind,
          what: `snapshot ${b.snapshotId ?? '?'}: ${b.kind === 'snapshot-l1-too-large' ? 'L1 table size too large' : b.kind === 'snapshot-l1-unaligned' ? 'L1 table offset not cluster aligned' : 'L1 table beyond the end of the file'}`,
          decide:
            'delete the snapshot (qemu-img snapshot -d) or restore its entry; its clusters are kept until then (QEMU frees them while leaving the entry, which breaks the snapshot)',
        });
      }
    }
  }

  // --- 2. orphaned L2 tables: re-link instead of freeing them -------------------------------------
  if (relinkNeeded.length) {
    const cands = await findOrphanL2(img0, w0);
    for (const c of cands) reserved.add(c);
    const b = relinkNeeded[0]!;
    if (all && relinkNeeded.length === 1 && cands.length === 1) {
      const c = cands[0]!;
      const off = c * cs;
      const hi = Math.floor(off / 0x1_0000_0000) | (b.active ? C.OFLAG_COPIED_HI : 0);
      const lo = off >>> 0;
      entryFix.set(b.entry, { hi: hi >>> 0, lo, why: `${where(b)}: re-link to the orphaned L2 table at ${at(off)}` });
      fixes.push({
        kind: 're-link-l2',
        counts: 'corruption',
        differsFromQemu: true,
        text: `${where(b)} pointed to ${at(l1off(b))} (${b.kind.replace('l1-', '').replace(/-/g, ' ')}); re-linked to the orphaned L2 table at ${at(off)}, which still looks valid and whose data clusters nothing else uses — QEMU would free that table and its data`,
      });
      corruptionsFixed++;
    } else {
      for (const x of relinkNeeded) {
        if (all && cands.length === 0 && x.kind === 'l1-into-metadata') {
          // The target is provably another structure, not an L2 table, and no lost table exists.
          entryFix.set(x.entry, {
            hi: 0,
            lo: 0,
            why: `${where(x)}: pointed into the ${w0.metadata.get(Math.floor(l1off(x) / cs))}; cleared`,
          });
          fixes.push({
            kind: 'l1-cleared',
            counts: 'corruption',
            differsFromQemu: true,
            text: `${where(x)} pointed into the ${w0.metadata.get(Math.floor(l1off(x) / cs))} at ${at(l1off(x))}, which is not an L2 table, and no orphaned L2 table exists; the entry was cleared (that guest range now reads as unallocated — it never mapped real data)`,
          });
          corruptionsFixed++;
          continue;
        }
        refusals.push({
          kind: x.kind,
          what: `${where(x)} points to ${at(l1off(x))} (${x.kind.replace('l1-', '').replace(/-/g, ' ')})`,
          decide: cands.length
            ? `which orphaned L2 table it should point to (candidates: ${cands.map((c) => at(c * cs)).join(', ')}); leaked clusters are kept`
            : 'no orphaned L2 table was found: clear the entry (its guest range then reads as zeros/backing) if that is acceptable',
        });
      }
    }
  }

  // The active L1 table lies past the end of the file: look for the one leaked cluster that still
  // reads as this image's L1 table (every entry empty or pointing at an orphaned L2 table).
  if (lostL1) {
    const l2s = new Set(await findOrphanL2(img0, w0));
    const cands = h.l1Size * 8 <= cs ? await findOrphanL1(img0, w0, l2s) : [];
    for (const c of cands) reserved.add(c);
    for (const c of l2s) reserved.add(c);
    if (cands.length === 1) {
      const off = cands[0]! * cs;
      const bytes = new Uint8Array(8);
      putU64(bytes, 0, off);
      headerFixes.push({
        offset: C.HDR.l1TableOffset,
        bytes,
        why: `header.l1_table_offset ${at(h.l1TableOffset)} (past the end of the file) → ${at(off)}, the orphaned L1 table`,
      });
      fixes.push({
        kind: 're-link-l1',
        counts: 'corruption',
        differsFromQemu: true,
        text: `the active L1 table pointer (${at(h.l1TableOffset)}) lay past the end of the file; re-linked to the orphaned L1 table at ${at(off)}, whose entries all point at orphaned L2 tables — QEMU would free the whole tree and its data`,
      });
      corruptionsFixed++;
    } else {
      refusals.push({
        kind: 'l1-table-beyond-eof',
        what: `the active L1 table at ${at(h.l1TableOffset)} lies past the end of the file`,
        decide: cands.length
          ? `which leaked cluster is the L1 table (candidates: ${cands.map((c) => at(c * cs)).join(', ')}); leaked clusters are kept`
          : 'where the L1 table really is (leaked clusters that look like its L2 tables are kept); restore header.l1_table_offset by hand',
      });
    }
  }

  // --- 3. cross-links: copy the cluster so each referrer keeps its own data ----------------------
  const copies: Copy[] = [];
  let forceRebuild = false;
  if (all) {
    const isData = (r: Ref): boolean => r.kind === 'l2' || r.kind === 'snap-l2';
    const seen = new Set<number>();
    const consider = (c: number, list: Ref[]): void => {
      if (seen.has(c)) return;
      seen.add(c);
      const data = list.filter(isData).filter((r) => !entryFix.has(r.entry));
      const l1s = list.filter((r) => !isData(r)).filter((r) => !entryFix.has(r.entry));
      const meta = w0.metadata.get(c);
      if (meta !== undefined || (l1s.length && data.length)) {
        // Guest data mapped onto a metadata cluster (or onto an L2 table): the data referrers get a copy.
        // A refcount block must then be replaced by a rebuilt structure rather than edited in place,
        // or the bytes the guest reads would change under the repair (and differ after a crash).
        if (meta === 'refcount block') forceRebuild = true;
        for (const g of groupByGuest(data))
          copies.push({
            kind: 'data',
            from: c,
            to: -1,
            entries: g.map((r) => r.entry),
            why: `guest data at ${g.map((r) => at(r.guest)).join(', ')} shared cluster ${c} with the ${meta ?? 'L2 table'}`,
          });
        return;
      }
      const refsOnDisk = w0.onDiskUnknown[c] ? 0 : w0.onDisk[c]!;
      for (const [list2, kind] of [
        [data, 'data'],
        [l1s, 'l2'],
      ] as const) {
        const groups = groupByGuest(list2);
        if (groups.length < 2 || refsOnDisk >= w0.refs[c]!) continue;
        for (const g of groups.slice(1))
          copies.push({
            kind,
            from: c,
            to: -1,
            entries: g.map((r) => r.entry),
            why: `cluster ${c} was cross-linked: ${kind === 'data' ? 'guest offsets' : 'L1 ranges from'} ${groups.map((x) => at(x[0]!.guest)).join(' and ')} (refcount ${refsOnDisk}, ${w0.refs[c]} references)`,
          });
      }
    };
    for (const [c, list] of w0.multi) consider(c, list);
    for (const [c, r] of w0.first) if (w0.metadata.has(c) && isData(r)) consider(c, [r]);
  }

  // --- 4. snapshot table: incomplete v3 entries are rewritten with full extra data -----------------
  let newSnapTable: Uint8Array | undefined;
  if (w0.snapshotTableError) {
    refusals.push({
      kind: 'snapshot-table',
      what: `snapshot table: ${w0.snapshotTableError}`,
      decide: 'which snapshots to drop (QEMU -r all discards them); nothing is changed here',
    });
    keepAllLeaks = true;
  } else if (all && (w0.incompleteSnapshots.length || w0.oversizeSnapshots.length || snapFix.size)) {
    newSnapTable = concat(w0.snapshots.map((s, i) => encodeSnapshotEntry({ ...s, ...(snapFix.get(i) ?? {}) }, h.size)));
    for (const o of w0.oversizeSnapshots) {
      fixes.push({
        kind: 'snapshot-extra-truncated',
        counts: 'corruption',
        qemuLine: `Discarding too much extra metadata in snapshot table entry ${o.index} (${o.size} > ${C.QCOW_MAX_SNAPSHOT_EXTRA_DATA})`,
        text: `snapshot table entry ${o.index} had ${o.size} bytes of extra data (at most ${C.QCOW_MAX_SNAPSHOT_EXTRA_DATA} allowed); truncated, snapshot kept`,
      });
      corruptionsFixed++;
    }
    for (const i of w0.incompleteSnapshots) {
      fixes.push({
        kind: 'snapshot-incomplete',
        counts: 'corruption',
        qemuLine: `Repairing snapshot table entry ${i} is incomplete`,
        text: `snapshot table entry ${i} had less than 16 bytes of extra data; table rewritten with complete entries`,
      });
      corruptionsFixed++;
    }
  }
  // Stale persistent bitmaps (a program without bitmap support wrote the image): every reader
  // already ignores them, so, as QEMU does on any -r, the extension is dropped and their clusters freed.
  let headerExt: { offset: number; bytes: Uint8Array } | undefined;
  if (w0.staleBitmaps) {
    headerExt = await headerWithoutExtension(io, h, C.EXT_BITMAPS);
    if (headerExt) {
      fixes.push({
        kind: 'stale-bitmaps-dropped',
        counts: 'none',
        text: 'the bitmaps extension was stale (its autoclear bit is clear); removed from the header, its clusters freed (as QEMU does)',
      });
    } else {
      keepAllLeaks = true;
      refusals.push({
        kind: 'stale-bitmaps',
        what: 'the bitmaps extension is present but its autoclear bit is clear (the bitmaps are stale)',
        decide: 'drop the bitmaps by hand; the header extension area could not be rewritten safely',
      });
    }
  }

  // --- 5. allocation of new clusters --------------------------------------------------------------
  const badRefblocks = w0.refblocks.filter((r) => r.status !== 'ok');
  // The walk is authoritative, so a dirty (lazy-refcount) image is rebuilt only if its counts need it.
  let rebuild = (all ? badRefblocks.length > 0 : badRefblocks.some((r) => r.status !== 'beyond-eof')) || forceRebuild;
  const L0 = w0.refs.length;
  for (let c = 0; c < L0 && !rebuild; c++) if (w0.refs[c]! > 0 && w0.onDisk[c] === 0) rebuild = true;
  const okGroups = new Set(w0.refblocks.filter((r) => r.status === 'ok').map((r) => r.index));
  const covered = (c: number): boolean => okGroups.has(Math.floor(c / E));
  const freeForAlloc = (c: number, inPlace: boolean): boolean =>
    c >= 1 &&
    c < L0 &&
    w0.refs[c] === 0 &&
    w0.onDisk[c] === 0 &&
    !w0.onDiskUnknown[c] &&
    !w0.oldRefcountClusters.has(c) &&
    !w0.metadata.has(c) &&
    !keep.has(c) &&
    !reserved.has(c) &&
    (!inPlace || covered(c));
  const snapClusters = newSnapTable ? Math.ceil(newSnapTable.length / cs) : 0;
  const allocated = new Set<number>();
  const allocate = (inPlace: boolean): boolean => {
    allocated.clear();
    const take = (): number => {
      for (let c = 1; c < L0; c++)
        if (!allocated.has(c) && freeForAlloc(c, inPlace)) {
          allocated.add(c);
          return c;
        }
      return -1;
    };
    for (const cp of copies) if ((cp.to = take()) < 0) return false;
    if (snapClusters) {
      let run = 0;
      for (let c = 1; c < L0; c++) {
        run = !allocated.has(c) && freeForAlloc(c, inPlace) ? run + 1 : 0;
        if (run === snapClusters) {
          for (let k = c - run + 1; k <= c; k++) allocated.add(k);
          snapStart = c - run + 1;
          return true;
        }
      }
      return false;
    }
    return true;
  };
  let snapStart = -1;
  if ((copies.length || snapClusters) && !allocate(!rebuild)) {
    if (!rebuild && allocate(false)) rebuild = true;
    else {
      refusals.push({
        kind: 'no-space',
        what: 'no free cluster for the copies / new snapshot table near the end of the file',
        decide: 'grow the file or run again after freeing leaks',
      });
      copies.length = 0;
      newSnapTable = undefined;
    }
  }

  // QEMU's -r leaks cannot rebuild: it stops before changing anything.
  // (A refcount block past the end of the file is no reason: QEMU's -r leaks just leaves it.)
  if (!all && (badRefblocks.some((r) => r.status !== 'beyond-eof') || rebuild)) {
    return emptyPlan(opts, img0, len0, fixes, refusals, 'need to rebuild refcount structures');
  }

  // --- 6. the image as it will be: overlay + second walk ------------------------------------------
  const ov = new OverlayIO(io, len0);
  for (const [entry, v] of entryFix) await ov.write(entry, u64be(v.hi, v.lo));
  for (const cp of copies) {
    cp.content = await readPadded(ov, cp.from * cs, cs);
    if (cp.kind === 'l2') cp.content = stripCopied(cp.content, img0);
    await ov.write(cp.to * cs, cp.content);
    for (const e of cp.entries) {
      const cur = await readPadded(ov, e, 8);
      const hi = ((u32(cur, 0) & ~C.L2E_OFFSET_MASK_HI) | Math.floor((cp.to * cs) / 0x1_0000_0000)) >>> 0;
      const lo = ((u32(cur, 4) & ~C.L2E_OFFSET_MASK_LO) | ((cp.to * cs) >>> 0)) >>> 0;
      entryFix.set(e, { hi, lo, why: `point to the copy of cluster ${cp.from} at ${at(cp.to * cs)} (${cp.why})` });
      await ov.write(e, u64be(hi, lo));
    }
    fixes.push({
      kind: 'cross-link-copied',
      counts: 'corruption',
      differsFromQemu: true,
      text: `${cp.why}: copied to cluster ${cp.to} so each referrer keeps its own ${cp.kind === 'l2' ? 'L2 table' : 'data'} — QEMU would raise the refcount and silently share it`,
    });
    corruptionsFixed++;
  }
  const snapHeader = new Uint8Array(12);
  if (newSnapTable) {
    await ov.write(snapStart * cs, newSnapTable);
    putU32(snapHeader, 0, w0.snapshots.length);
    putU64(snapHeader, 4, snapStart * cs);
    await ov.write(C.HDR.nbSnapshots, snapHeader);
  }
  if (headerExt) await ov.write(headerExt.offset, headerExt.bytes);
  for (const f of headerFixes) await ov.write(f.offset, f.bytes);
  // Nothing re-pointed: the image as it will be has the same references (skip the second walk).
  const repointed =
    entryFix.size > 0 ||
    copies.length > 0 ||
    newSnapTable !== undefined ||
    headerExt !== undefined ||
    headerFixes.length > 0;
  const img1 = repointed ? await Qcow2Image.open(ov, { checkMode: true, zeroFillPastEof: true }) : img0;
  const w1 = repointed ? await walkReferences(img1) : w0;

  // --- 7. target refcounts ------------------------------------------------------------------------
  for (const a of opts.anomalies ?? []) {
    if (!UNREPAIRABLE_KINDS.has(a.kind) || refusals.some((r) => r.kind === a.kind)) continue;
    refusals.push({
      kind: a.kind,
      what: a.explanation,
      decide: 'no safe automatic repair exists (QEMU has none either); decide by hand',
    });
  }
  // Anything refused may still need clusters we cannot see: then nothing is freed or lowered at all.
  const protectAll = refusals.length > 0 || keepAllLeaks;
  const L = Math.max(w1.refs.length, L0);
  const T = new Float64Array(L);
  for (let c = 0; c < L; c++) T[c] = w1.refs[c] ?? 0;
  const onDisk = (c: number): number => (c < w0.onDisk.length ? w0.onDisk[c]! : 0);
  let keptLeaks = 0;
  for (let c = 0; c < L; c++) {
    const d = onDisk(c);
    const origLeak = d > 0 && (w0.refs[c] ?? 0) === 0;
    if ((keep.has(c) || protectAll) && d > T[c]!) {
      T[c] = d;
      if (origLeak) keptLeaks++;
    }
  }
  if (keptLeaks)
    fixes.push({
      kind: 'leaks-kept',
      counts: 'none',
      differsFromQemu: true,
      text: `${keptLeaks} leaked cluster(s) kept and no refcount lowered, because an unresolved problem may still need them (QEMU would free them)`,
    });
  const maxRc = maxRefcount(geo.refcountOrder);
  for (let c = 0; c < L; c++) {
    if (T[c]! <= maxRc) continue;
    refusals.push({
      kind: 'refcount-overflow',
      what: `cluster ${c} needs refcount ${T[c]}, more than ${geo.refcountBits}-bit refcounts hold`,
      decide: 'widen the refcounts (qemu-img amend -o refcount_bits=16) and repair again',
    });
    T[c] = onDisk(c);
  }
  // -r leaks only lowers.
  if (!all) for (let c = 0; c < L; c++) if (onDisk(c) < T[c]!) T[c] = onDisk(c);

  // --- 8. writes ----------------------------------------------------------------------------------
  const pb = new PlanBuilder(io, len0);
  const v3 = h.version === 3;
  const lowRef = hasLowRefcounts(w0);
  const expectClean =
    refusals.length === 0 &&
    (all ||
      (w0.bad.length === 0 && !lowRef && w0.incompleteSnapshots.length === 0 && w0.oversizeSnapshots.length === 0));
  const structural =
    rebuild || entryFix.size > 0 || copies.length > 0 || newSnapTable !== undefined || headerFixes.length > 0;
  let incompat = h.incompatibleFeatures;
  const hdr8 = (v: bigint): Uint8Array => {
    const b = new Uint8Array(8);
    putU64(b, 0, v);
    return b;
  };
  if (structural && v3 && expectClean && (incompat & C.INCOMPAT_CORRUPT) === 0n) {
    incompat |= C.INCOMPAT_CORRUPT;
    await pb.write(
      'mark-corrupt',
      C.HDR.incompatibleFeatures,
      hdr8(incompat),
      'header',
      'set the corrupt bit while the structure is rewritten (cleared last, after the re-check)',
    );
  }

  // Refcounts: final (F) and the values in force between "raise" and "lower" (R).
  let F: Float64Array;
  let R: Float64Array;
  let rebuildGroups = new Map<number, number>();
  if (!rebuild) {
    F = T;
    R = new Float64Array(L);
    for (let c = 0; c < L; c++) R[c] = Math.max(onDisk(c), T[c]!);
  } else {
    // Old refcount structure clusters are counted by both walks; after the switch nothing references them.
    const oldContrib = new Float64Array(L);
    for (
      let c = Math.floor(h.refcountTableOffset / cs);
      h.refcountTableClusters && c < Math.floor(h.refcountTableOffset / cs) + h.refcountTableClusters;
      c++
    )
      oldContrib[c]!++;
    for (const rb of w0.refblocks) if (rb.status === 'ok') oldContrib[rb.offset / cs]!++;
    const base = new Float64Array(L);
    const fin = new Float64Array(L);
    for (let c = 0; c < L; c++) {
      fin[c] = Math.max(0, T[c]! - oldContrib[c]!);
      base[c] = Math.max(fin[c]!, Math.max(0, (w0.refs[c] ?? 0) - oldContrib[c]!));
    }
    const n0 = w0.hostClusters;
    const isFree = (c: number): boolean => {
      if (c < 1) return false;
      if (w0.oldRefcountClusters.has(c) || w0.metadata.has(c) || keep.has(c) || reserved.has(c) || allocated.has(c))
        return false;
      if (c < L && (base[c] !== 0 || fin[c] !== 0)) return false;
      const unknown = c < w0.onDiskUnknown.length && w0.onDiskUnknown[c] === 1;
      // The old structure must agree the cluster is free; where it cannot be read, only past the end of file is known free.
      if (unknown) return c >= n0;
      return c >= w0.onDisk.length || w0.onDisk[c] === 0;
    };
    const placed = placeRefcountStructure(base, isFree, E, cs);
    rebuildGroups = placed.refblocks;
    const LL = placed.counts.length;
    R = placed.counts;
    F = new Float64Array(LL);
    for (let c = 0; c < LL; c++) F[c] = (c < L ? fin[c]! : 0) + (placed.isStruct.has(c) ? 1 : 0);
    // raise: refblocks, then the table.
    for (const [g, c] of placed.refblocks) {
      const block = new Uint8Array(cs);
      for (let j = 0; j < E && g * E + j < LL; j++)
        if (R[g * E + j]) setRefcount(block, j, geo.refcountOrder, R[g * E + j]!);
      await pb.write('raise', c * cs, block, 'refcount-block', `new refcount block ${g} (rebuilt structure)`);
    }
    const rt = new Uint8Array(placed.reftableClusters * cs);
    for (const [g, c] of placed.refblocks) putU64(rt, g * 8, c * cs);
    await pb.write(
      'raise',
      placed.reftableStart * cs,
      rt,
      'refcount-table',
      `new refcount table (${placed.reftableClusters} cluster(s))`,
    );
    const sw = new Uint8Array(12);
    putU64(sw, 0, placed.reftableStart * cs);
    putU32(sw, 8, placed.reftableClusters);
    await pb.write(
      'switch-reftable',
      C.HDR.refcountTableOffset,
      sw,
      'header',
      'switch to the rebuilt refcount table (12 bytes, one sector)',
    );
    fixes.push({
      kind: 'rebuild',
      counts: 'none',
      qemuLine: 'Rebuilding refcount structure',
      text: `refcount structure rebuilt: table at cluster ${placed.reftableStart}, ${placed.refblocks.size} block(s) in clusters ${[...placed.refblocks.values()].join(', ')} — all free in the old structure and in both reference maps`,
    });
    corruptionsFixed += badRefblocks.length;
  }

  // In-place refcount changes, per refcount block.
  const refcountLines = async (
    phase: 'raise' | 'lower',
    from: (c: number) => number,
    to: (c: number) => number,
  ): Promise<void> => {
    for (const rb of w0.refblocks) {
      if (rb.status !== 'ok') continue;
      const g0 = rb.index * E;
      if (g0 >= L) continue;
      const before = await pb.read(rb.offset, cs);
      const after = before.slice();
      let changed = false;
      for (let j = 0; j < E && g0 + j < L; j++) {
        const a = from(g0 + j);
        const b = to(g0 + j);
        if (a !== b) {
          setRefcount(after, j, geo.refcountOrder, b);
          changed = true;
        }
      }
      if (changed)
        await pb.writeDiff(
          phase,
          rb.offset,
          before,
          after,
          'refcount-block',
          `${phase === 'raise' ? 'raise' : 'lower'} refcounts in block ${rb.index}`,
        );
    }
  };

  // COPIED flags from the final counts, on the final tables.
  // The COPIED scan reads every active L2 table again; it can only find something when the image is
  // re-pointed, the checker saw a COPIED problem, or some refcount crosses 1.
  let copiedScan =
    repointed ||
    opts.anomalies === undefined ||
    opts.anomalies.some((a) => a.kind === 'copied-l1' || a.kind === 'copied-l2');
  for (let c = 0; c < F.length && !copiedScan; c++)
    if ((F[c] === 1) !== (onDisk(c) === 1) && (w1.refs[c] ?? 0) > 0) copiedScan = true;
  const copiedWrites = copiedScan
    ? await planCopied(img1, w1, F, R, entryFix, all || expectClean, !protectAll)
    : { clear: [], set: [], relinkValue: new Map<number, { hi: number; lo: number; why: string }>(), notes: [] };

  // Message lines and counters for the refcount comparison (QEMU's wording). After a rebuild every
  // mismatch QEMU's first pass saw is gone (its counters count them all); in place, the ones we change.
  for (let c = 0; c < Math.max(L0, 0); c++) {
    const d = onDisk(c);
    const r = w0.refs[c] ?? 0;
    if (w0.onDiskUnknown[c] || d === r) continue;
    const final = rebuild ? (F[c] ?? 0) : T[c]!;
    if (!rebuild && final === d) continue;
    const leak = d > r;
    const beyond = c >= w0.hostClusters && r === 0;
    if (beyond) {
      // QEMU never looks at refcounts past the end of the file (its S28 gap): fixed, not counted.
      if (final !== d)
        fixes.push({
          kind: 'refcount-beyond-eof',
          counts: 'none',
          differsFromQemu: true,
          text: `cluster ${c} lies past the end of the file but had refcount ${d}; set to ${final} (QEMU does not check this)`,
        });
      continue;
    }
    if (!rebuild || d !== 0 || r === 0) {
      fixes.push({
        kind: leak ? 'leak' : 'refcount',
        counts: leak ? 'leak' : 'corruption',
        qemuLine: `Repairing cluster ${c} refcount=${d} reference=${r}`,
        text: `cluster ${c}: refcount ${d} → ${final} (${r} reference(s))`,
      });
    } else {
      fixes.push({
        kind: 'refcount',
        counts: 'corruption',
        text: `cluster ${c}: refcount 0 → ${final} (${r} reference(s)) in the rebuilt structure`,
      });
    }
    if (leak) leaksFixed++;
    else corruptionsFixed++;
  }

  // Phase by phase.
  for (const w of copiedWrites.clear) await pb.write('clear-copied', w.entry, u64be(w.hi, w.lo), w.structure, w.why);
  if (!rebuild) await refcountLines('raise', onDisk, (c) => R[c]!);
  for (const cp of copies)
    await pb.write(
      'data',
      cp.to * cs,
      cp.content!,
      cp.kind === 'l2' ? 'l2-table' : 'data-copy',
      `copy of cluster ${cp.from} (${cp.why})`,
    );
  if (newSnapTable) {
    const padded = new Uint8Array(snapClusters * cs);
    padded.set(newSnapTable);
    await pb.write('data', snapStart * cs, padded, 'snapshot-table', 'rewritten snapshot table with complete entries');
  }
  for (const [entry, v] of entryFix) {
    const fin = copiedWrites.relinkValue.get(entry) ?? v;
    const inL1 =
      (entry >= h.l1TableOffset && entry < h.l1TableOffset + h.l1Size * 8) ||
      w0.snapshots.some((s) => entry >= s.l1TableOffset && entry < s.l1TableOffset + s.l1Size * 8);
    await pb.write('relink', entry, u64be(fin.hi, fin.lo), inL1 ? 'l1-entry' : 'l2-entry', v.why);
  }
  if (newSnapTable)
    await pb.write(
      'relink',
      C.HDR.nbSnapshots,
      snapHeader,
      'header',
      'switch to the rewritten snapshot table (12 bytes)',
    );
  for (const f of headerFixes) await pb.write('relink', f.offset, f.bytes, 'header', f.why);
  if (headerExt)
    await pb.write(
      'relink',
      headerExt.offset,
      headerExt.bytes,
      'header',
      'drop the stale bitmaps extension (header extension area rewritten; every pointer field unchanged)',
    );
  if (!rebuild)
    await refcountLines(
      'lower',
      (c) => R[c]!,
      (c) => F[c]!,
    );
  else {
    // Lower within the new refcount blocks (old references that are gone after the relink phase).
    for (const [g, c] of rebuildGroups) {
      const before = await pb.read(c * cs, cs);
      const after = new Uint8Array(cs);
      for (let j = 0; j < E && g * E + j < F.length; j++)
        if (F[g * E + j]) setRefcount(after, j, geo.refcountOrder, F[g * E + j]!);
      await pb.writeDiff('lower', c * cs, before, after, 'refcount-block', `lower refcounts in rebuilt block ${g}`);
    }
  }
  for (const w of copiedWrites.set) await pb.write('set-copied', w.entry, u64be(w.hi, w.lo), w.structure, w.why);
  for (const l of copiedWrites.notes) {
    fixes.push(l);
    corruptionsFixed++;
  }
  if (v3 && expectClean && (incompat & (C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT)) !== 0n) {
    const fin = incompat & ~(C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT);
    await pb.write(
      'header',
      C.HDR.incompatibleFeatures,
      hdr8(fin),
      'header',
      `clear ${[incompat & C.INCOMPAT_DIRTY ? 'the dirty bit' : '', incompat & C.INCOMPAT_CORRUPT ? 'the corrupt bit' : ''].filter(Boolean).join(' and ')} (last)`,
    );
  }

  const steps = pb.steps_();
  return {
    image: opts.name ?? io.name,
    mode: opts.mode,
    clusterSize: cs,
    originalLength: len0,
    steps,
    fixes,
    refusals,
    rebuild,
    expected: {
      remainingCorruptions: refusals.length + (all ? 0 : countLow(w0, T, onDisk)),
      remainingLeaks: keptLeaks,
      fileLength: await pb.finalLength(),
    },
    leaksFixed,
    corruptionsFixed,
  };
}

// --- helpers -------------------------------------------------------------------------------------

/**
 * Drop the header extensions of `type` when they are the last ones before the end marker: one
 * 8-byte end marker written where the first of them starts (8-aligned, so inside one sector:
 * atomic). Bytes after the new end marker are ignored by every reader. Undefined when the
 * extensions are not at the tail (that would need a non-atomic rewrite of the area) or the area
 * cannot be parsed.
 */
async function headerWithoutExtension(
  io: PositionalIO,
  h: Qcow2Image['header'],
  type: number,
): Promise<{ offset: number; bytes: Uint8Array } | undefined> {
  const cs = 2 ** h.clusterBits;
  const c0 = await readPadded(io, 0, cs);
  const limit = h.backingFileOffset !== 0 ? h.backingFileOffset : cs;
  let off = h.headerLength;
  let firstDropped = -1;
  for (;;) {
    if (off + 8 > limit) return undefined;
    const t = u32(c0, off);
    const len = u32(c0, off + 4);
    if (t === C.EXT_END) break;
    const whole = 8 + Math.ceil(len / 8) * 8;
    if (off + whole > limit) return undefined;
    if (t === type) {
      if (firstDropped < 0) firstDropped = off;
    } else if (firstDropped >= 0) return undefined;
    off += whole;
  }
  if (firstDropped < 0 || firstDropped % 8 !== 0) return undefined;
  return { offset: firstDropped, bytes: new Uint8Array(8) };
}

/** An L2 table copy: data clusters become shared with the original table, so no entry may keep COPIED. */
function stripCopied(t: Uint8Array, img: Qcow2Image): Uint8Array {
  const out = t.slice();
  const step = img.geo.l2EntrySize;
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(out, j * step);
    if (hi & C.OFLAG_COMPRESSED_HI) continue;
    putU32(out, j * step, (hi & ~C.OFLAG_COPIED_HI) >>> 0);
  }
  return out;
}

function l1off(b: BadEntry): number {
  return (b.hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((b.lo & C.L1E_OFFSET_MASK_LO) >>> 0);
}

function groupByGuest(refs: Ref[]): Ref[][] {
  const m = new Map<number, Ref[]>();
  for (const r of refs) {
    const l = m.get(r.guest);
    if (l) l.push(r);
    else m.set(r.guest, [r]);
  }
  return [...m.values()];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function hasLowRefcounts(w: RefWalk): boolean {
  for (let c = 0; c < w.refs.length; c++) if (!w.onDiskUnknown[c] && w.onDisk[c]! < w.refs[c]!) return true;
  return false;
}

function countLow(w: RefWalk, T: Float64Array, onDisk: (c: number) => number): number {
  let n = w.bad.length;
  for (let c = 0; c < T.length; c++) if (onDisk(c) < (w.refs[c] ?? 0)) n++;
  return n;
}

function emptyPlan(
  opts: PlanOptions,
  img: Qcow2Image,
  len0: number,
  fixes: FixNote[],
  refusals: Refusal[],
  failed: string,
): RepairPlan {
  return {
    image: opts.name ?? img.io.name,
    mode: opts.mode,
    clusterSize: img.clusterSize,
    originalLength: len0,
    steps: [],
    fixes,
    refusals,
    rebuild: false,
    expected: { remainingCorruptions: 1, remainingLeaks: 0, fileLength: len0 },
    leaksFixed: 0,
    corruptionsFixed: 0,
    failed,
  };
}

/**
 * Leaked clusters that still look like an L2 table of this image: every entry is empty or a valid
 * descriptor inside the file, at least one maps data, and every data cluster it maps is itself
 * unaccounted for (refcount above its references) — the footprint a table leaves when the one
 * pointer to it is damaged.
 */
async function findOrphanL2(img: Qcow2Image, w: RefWalk): Promise<number[]> {
  const out: number[] = [];
  if (img.geo.extendedL2) return out;
  const cs = img.clusterSize;
  for (let c = 1; c < w.hostClusters; c++) {
    if (w.refs[c] !== 0 || w.onDiskUnknown[c] || w.onDisk[c]! < 1 || w.metadata.has(c) || w.oldRefcountClusters.has(c))
      continue;
    const t = await readPadded(img.io, c * cs, cs);
    if (looksLikeL2(t, img, w, c)) out.push(c);
  }
  return out;
}

/**
 * Whether cluster `c` reads as a snapshot's L1 table of `size` entries: leaked, every entry empty
 * or an aligned L2 table offset whose cluster has more refcount than references (the snapshot's
 * missing reference), nothing past `size`, at least one entry.
 */
async function looksLikeSnapshotL1(img: Qcow2Image, w: RefWalk, c: number, size: number): Promise<boolean> {
  const cs = img.clusterSize;
  if (
    c < 1 ||
    c >= w.hostClusters ||
    w.refs[c] !== 0 ||
    w.onDiskUnknown[c] ||
    w.onDisk[c]! < 1 ||
    w.metadata.has(c) ||
    w.oldRefcountClusters.has(c)
  )
    return false;
  const t = await readPadded(img.io, c * cs, cs);
  let used = 0;
  for (let i = 0; i < cs / 8; i++) {
    const hi = u32(t, i * 8);
    const lo = u32(t, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    if (i >= size || hi & C.L1E_RESERVED_MASK_HI || lo & C.L1E_RESERVED_MASK_LO) return false;
    const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
    const x = off / cs;
    if (off % cs !== 0 || x === c || x >= w.hostClusters || w.onDiskUnknown[x] || !(w.onDisk[x]! > w.refs[x]!))
      return false;
    used++;
  }
  return used > 0;
}

/** Leaked clusters that read as this image's active L1 table: entries empty or pointing at `l2s`. */
async function findOrphanL1(img: Qcow2Image, w: RefWalk, l2s: Set<number>): Promise<number[]> {
  const out: number[] = [];
  const cs = img.clusterSize;
  const n = img.header.l1Size;
  for (let c = 1; c < w.hostClusters; c++) {
    // (An L1 table also passes the L2 test — its entries have the same shape — so l2s may contain it.)
    if (w.refs[c] !== 0 || w.onDiskUnknown[c] || w.onDisk[c]! < 1 || w.metadata.has(c) || w.oldRefcountClusters.has(c))
      continue;
    const t = await readPadded(img.io, c * cs, cs);
    let used = 0;
    let ok = true;
    for (let i = 0; i < cs / 8 && ok; i++) {
      const hi = u32(t, i * 8);
      const lo = u32(t, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if (i >= n || hi & C.L1E_RESERVED_MASK_HI || lo & C.L1E_RESERVED_MASK_LO) {
        ok = false;
        break;
      }
      const off = (hi & C.L1E_OFFSET_MASK_HI) * 0x1_0000_0000 + ((lo & C.L1E_OFFSET_MASK_LO) >>> 0);
      if (off % cs !== 0 || off / cs === c || !l2s.has(off / cs)) ok = false;
      used++;
    }
    if (ok && used > 0) out.push(c);
  }
  return out;
}

function looksLikeL2(t: Uint8Array, img: Qcow2Image, w: RefWalk, self: number): boolean {
  const cs = img.clusterSize;
  let data = 0;
  for (let j = 0; j < img.geo.l2Entries; j++) {
    const hi = u32(t, j * 8);
    const lo = u32(t, j * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    const type = classifyL2(hi, lo, false, img.hasExternalData);
    if (type === ClusterType.Compressed) {
      const d = decodeCompressed(hi, lo, img.geo);
      if (d.offset + d.size > w.fileSize) return false;
      continue;
    }
    if (type === ClusterType.ZeroPlain) {
      if (hi !== 0 || lo !== 1) return false;
      continue;
    }
    if (type === ClusterType.Unallocated) return false;
    if (hi & C.L2E_STD_RESERVED_MASK_HI || lo & C.L2E_STD_RESERVED_MASK_LO) return false;
    const off = l2Offset(hi, lo);
    if (off % cs !== 0 || off >= w.fileSize || off === 0) return false;
    const x = off / cs;
    if (x === self || w.onDiskUnknown[x] || !(w.onDisk[x]! > w.refs[x]!)) return false;
    data++;
  }
  return data > 0;
}

/**
 * Place a rebuilt refcount structure: one refblock per group of clusters with a non-zero count and a
 * contiguous refcount table, each in the first cluster `isFree` allows; the structure counts itself
 * (repeat until it stops growing). Returns the counts including the new structure.
 */
export function placeRefcountStructure(
  base: Float64Array,
  isFree: (c: number) => boolean,
  E: number,
  cs: number,
): {
  counts: Float64Array;
  refblocks: Map<number, number>;
  reftableStart: number;
  reftableClusters: number;
  isStruct: Set<number>;
} {
  let counts = base.slice();
  const isStruct = new Set<number>();
  const refblocks = new Map<number, number>();
  let rtStart = -1;
  let rtClusters = 0;
  const ensure = (c: number): void => {
    if (c < counts.length) return;
    const next = new Float64Array(Math.max(c + 1, counts.length * 2));
    next.set(counts);
    counts = next;
  };
  const usable = (c: number): boolean => !isStruct.has(c) && (c >= counts.length || counts[c] === 0) && isFree(c);
  // First fit with a cursor that only moves forward (clusters before it were all taken or not free).
  let cursor = 1;
  const alloc1 = (): number => {
    while (!usable(cursor)) cursor++;
    const c = cursor;
    ensure(c);
    counts[c] = 1;
    isStruct.add(c);
    return c;
  };
  for (let iter = 0; iter < 64; iter++) {
    let changed = false;
    let top = counts.length - 1;
    while (top > 0 && counts[top] === 0) top--;
    for (let g = 0; g * E <= top; g++) {
      if (refblocks.has(g)) continue;
      let any = false;
      for (let c = g * E; c < Math.min(counts.length, (g + 1) * E); c++)
        if (counts[c] !== 0) {
          any = true;
          break;
        }
      if (!any) continue;
      refblocks.set(g, alloc1());
      changed = true;
    }
    let groups = 0;
    for (const g of refblocks.keys()) groups = Math.max(groups, g + 1);
    if (Math.ceil((groups * 8) / cs) > rtClusters) {
      // Room for half as many groups again, so the clusters the table and its blocks add do not
      // force yet another, larger table (which could otherwise chase itself past the end).
      const need = Math.ceil(((Math.ceil(groups * 1.5) + 1) * 8) / cs);
      for (let k = 0; k < rtClusters; k++) {
        counts[rtStart + k] = 0;
        isStruct.delete(rtStart + k);
      }
      let c = cursor;
      for (;;) {
        let ok = true;
        for (let k = 0; k < need; k++)
          if (!usable(c + k)) {
            ok = false;
            c = c + k + 1;
            break;
          }
        if (ok) break;
      }
      rtStart = c;
      rtClusters = need;
      ensure(c + need - 1);
      for (let k = 0; k < need; k++) {
        counts[c + k] = 1;
        isStruct.add(c + k);
      }
      changed = true;
    }
    if (!changed) return { counts, refblocks, reftableStart: rtStart, reftableClusters: rtClusters, isStruct };
  }
  throw new Error('refcount structure placement did not converge');
}

interface EntryWrite {
  entry: number;
  hi: number;
  lo: number;
  structure: 'l1-entry' | 'l2-entry';
  why: string;
}

/**
 * OFLAG_COPIED of the final active tree: set exactly when the final refcount is 1 (QEMU's rule).
 * Clearing happens first (always harmless), setting last (once the refcount is down to 1). Entries
 * the plan rewrites anyway get the right bit in that write when the refcount in force then allows it.
 */
async function planCopied(
  img: Qcow2Image,
  w: RefWalk,
  F: Float64Array,
  R: Float64Array,
  entryFix: Map<number, { hi: number; lo: number; why: string }>,
  allowed: boolean,
  maySet: boolean,
): Promise<{
  clear: EntryWrite[];
  set: EntryWrite[];
  relinkValue: Map<number, { hi: number; lo: number; why: string }>;
  notes: FixNote[];
}> {
  const cs = img.clusterSize;
  const clear: EntryWrite[] = [];
  const set: EntryWrite[] = [];
  const notes: FixNote[] = [];
  const relinkValue = new Map<number, { hi: number; lo: number; why: string }>();
  const fc = (c: number): number => (c < F.length ? F[c]! : 0);
  const rc = (c: number): number => (c < R.length ? R[c]! : 0);
  const consider = (
    entry: number,
    hi: number,
    lo: number,
    c: number,
    structure: 'l1-entry' | 'l2-entry',
    label: string,
    forceOne: boolean,
  ): void => {
    const desired = forceOne || fc(c) === 1;
    const has = (hi & C.OFLAG_COPIED_HI) !== 0;
    const withBit = (on: boolean): number => (on ? hi | C.OFLAG_COPIED_HI : hi & ~C.OFLAG_COPIED_HI) >>> 0;
    const fix = entryFix.get(entry);
    if (fix) {
      const now = desired && (forceOne || rc(c) === 1);
      relinkValue.set(entry, { hi: withBit(now), lo, why: fix.why });
      if (desired && !now)
        set.push({ entry, hi: withBit(true), lo, structure, why: `${label}: set OFLAG_COPIED (refcount now 1)` });
      return;
    }
    if (!allowed || desired === has || (desired && !maySet)) return;
    const line =
      structure === 'l1-entry'
        ? `Repairing OFLAG_COPIED L2 cluster: l1_index=${(entry - img.header.l1TableOffset) / 8} l1_entry=${hex64(hi, lo)} refcount=${fc(c)}`
        : `Repairing OFLAG_COPIED data cluster: l2_entry=${hex64(hi, lo)} refcount=${fc(c)}`;
    notes.push({
      kind: 'oflag-copied',
      counts: 'corruption',
      qemuLine: line,
      text: `${label}: OFLAG_COPIED ${desired ? 'set' : 'cleared'} (refcount ${fc(c)})`,
    });
    (desired ? set : clear).push({
      entry,
      hi: withBit(desired),
      lo,
      structure,
      why: `${label}: ${desired ? 'set' : 'clear'} OFLAG_COPIED (final refcount ${fc(c)})`,
    });
  };
  for (const e of w.activeL1) {
    const t = await readPadded(img.io, e.entry, 8);
    consider(e.entry, u32(t, 0), u32(t, 4), e.l2 / cs, 'l1-entry', `active L1 entry ${e.index}`, false);
  }
  const ext = img.hasExternalData;
  const step = img.geo.l2EntrySize;
  for (const l2 of w.activeL2.keys()) {
    const t = await readPadded(img.io, l2, cs);
    for (let j = 0; j < img.geo.l2Entries; j++) {
      const hi = u32(t, j * step);
      const lo = u32(t, j * step + 4);
      const type = classifyL2(hi, lo, img.geo.extendedL2, ext);
      if (type !== ClusterType.Normal && type !== ClusterType.ZeroAlloc) continue;
      const off = l2Offset(hi, lo);
      if (!ext && (off % cs !== 0 || off >= w.fileSize)) continue;
      // Fast path: the bit is already right and the plan does not rewrite the entry.
      const c = off / cs;
      if (
        (ext || fc(c) === 1) === ((hi & C.OFLAG_COPIED_HI) !== 0) &&
        (entryFix.size === 0 || !entryFix.has(l2 + j * step))
      )
        continue;
      consider(l2 + j * step, hi, lo, c, 'l2-entry', `L2 table 0x${l2.toString(16)} entry ${j}`, ext);
    }
  }
  return { clear, set, relinkValue, notes };
}
