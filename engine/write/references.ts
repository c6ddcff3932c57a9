// Count every reference to every host cluster, the way qemu-img check's calculate_refcounts does
// (qcow2.md §2.6–2.8), and note structural problems. Used to rebuild the refcounts of a dirty
// (lazy-refcount) image on open, and by the crash lab's judge. The walk is the image's one
// metadata traversal; shared L2 tables count once per L1 reference, as QEMU counts them, and the
// encryption header and persistent bitmaps count too.
import * as C from '../format/constants.js';
import { ClusterType } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { sourceOf, traverse } from '../image/traversal/index.js';
import type { L2Entry, Layer, Reference } from '../image/traversal/index.js';

/** A COPIED flag in an active table, with the cluster it describes. */
export interface CopiedFlag {
  kind: 'l1' | 'l2';
  cluster: number;
  copied: boolean;
  /** e.g. "l1[3]" or "l2@0x40000[17]". */
  where: string;
}

export interface ReferenceWalk {
  /** References per host cluster index. */
  refs: Map<number, number>;
  /** Corruptions found while walking (reserved bits, misalignment, regions past EOF, ...). */
  problems: string[];
  /** Every COPIED flag of the active L1 and its L2 tables. */
  copied: CopiedFlag[];
  fileSize: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export async function countReferences(img: Qcow2Image): Promise<ReferenceWalk> {
  const cs = img.clusterSize;
  const fileSize = await img.io.size();
  const out: ReferenceWalk = { refs: new Map(), problems: [], copied: [], fileSize };
  const count = (offset: number, size: number, what: string): void => {
    if (size <= 0) return;
    if (offset + size - fileSize >= cs) {
      out.problems.push(`${what}: region ${hex(offset)}+${hex(size)} exceeds the end of the file by a cluster or more`);
      return;
    }
    const last = Math.floor((offset + size - 1) / cs);
    for (let c = Math.floor(offset / cs); c <= last; c++) out.refs.set(c, (out.refs.get(c) ?? 0) + 1);
  };
  const layers: Layer[] = [];
  let tableBytes = 0;
  try {
    const { entries, byteLength } = await img.readSnapshots();
    tableBytes = byteLength;
    entries.forEach((s, i) =>
      layers.push({ l1Offset: s.l1TableOffset, l1Size: s.l1Size, snapshotId: s.id, snapshotIndex: i }),
    );
  } catch (e) {
    out.problems.push(`snapshot table: ${e instanceof Error ? e.message : String(e)}`);
  }
  await traverse(
    { ...sourceOf(img), fileSize },
    {
      reference: (r) => onReference(r, out, count, cs, fileSize),
      l2Entry: (e) => onL2Entry(e, out, count, cs, img.hasExternalData),
    },
    { snapshots: { layers, tableBytes }, sharedL2: 'repeat' },
  );
  return out;
}

const label = (snapshotId: string | undefined): string =>
  snapshotId === undefined ? 'active' : `snapshot ${snapshotId}`;

type Count = (offset: number, size: number, what: string) => void;

function onReference(r: Reference, out: ReferenceWalk, count: Count, cs: number, fileSize: number): boolean {
  switch (r.target) {
    case 'header':
      count(0, cs, 'header');
      return true;
    case 'l1':
    case 'snapshot-l1': {
      const what = label(r.from.snapshotId);
      if (r.problem === 'unaligned') out.problems.push(`${what}: L1 offset not cluster aligned`);
      else if (r.problem === 'too-large') out.problems.push(`${what}: L1 too large`);
      else count(r.offset, r.length, `${what} L1 table`);
      return true;
    }
    case 'l2':
      return onL1Entry(r, out, count, cs);
    case 'snapshot-table':
      count(r.offset, r.length, 'snapshot table');
      return true;
    case 'refcount-table':
      count(r.offset, r.length, 'refcount table');
      return true;
    case 'refcount-block': {
      const i = r.from.index!;
      if (r.reserved) out.problems.push(`reftable[${i}]: reserved bits set`);
      else if (r.problem === 'unaligned') out.problems.push(`reftable[${i}]: refcount block not cluster aligned`);
      else if (r.offset / cs >= Math.ceil(fileSize / cs))
        out.problems.push(`reftable[${i}]: refcount block ${hex(r.offset)} outside the image`);
      else count(r.offset, cs, `refcount block ${i}`);
      return false;
    }
    case 'crypto-header':
      count(r.offset, r.length, 'encryption header');
      return true;
    case 'bitmap-directory':
    case 'bitmap-table':
      count(r.offset, r.length, r.target.replace('-', ' '));
      return true;
    case 'bitmap-data':
      count(r.offset, cs, 'bitmap data cluster');
      return true;
    default:
      return false;
  }
}

function onL1Entry(r: Reference, out: ReferenceWalk, count: Count, cs: number): boolean {
  const what = label(r.from.snapshotId);
  const i = r.from.index!;
  if (r.reserved) out.problems.push(`${what} l1[${i}]: reserved bits set`);
  if (r.problem === 'unaligned') {
    out.problems.push(`${what} l1[${i}]: L2 offset ${hex(r.offset)} not cluster aligned`);
    return false;
  }
  // Flags without an offset: QEMU counts cluster 0 (the header) for it; never read it as an L2 table.
  if (r.problem === 'zero') out.problems.push(`${what} l1[${i}]: flags set without an L2 offset`);
  count(r.offset, cs, `${what} l1[${i}] L2 table`);
  if (r.from.kind === 'l1')
    out.copied.push({
      kind: 'l1',
      cluster: r.offset / cs,
      copied: (r.hi & C.OFLAG_COPIED_HI) !== 0,
      where: `l1[${i}]`,
    });
  return true;
}

function onL2Entry(e: L2Entry, out: ReferenceWalk, count: Count, cs: number, externalData: boolean): void {
  const what = label(e.layer.snapshotId);
  const where = `l2@${hex(e.table)}[${e.index}]`;
  if (e.type === ClusterType.Compressed) {
    if (e.copied) out.problems.push(`${what} ${where}: COPIED set on a compressed cluster`);
    count(e.offset, e.length, `${what} compressed cluster`);
    return;
  }
  if (e.reserved) out.problems.push(`${what} ${where}: reserved bits set`);
  if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) return;
  if (e.problem === 'unaligned') {
    out.problems.push(`${what} ${where}: data offset ${hex(e.offset)} not cluster aligned`);
    return;
  }
  // Guest data in an external data file is not refcounted in this file.
  if (externalData) return;
  count(e.offset, cs, `${what} data cluster`);
  if (e.layer.snapshotId === undefined)
    out.copied.push({ kind: 'l2', cluster: e.offset / cs, copied: e.copied, where });
}
