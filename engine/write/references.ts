// Count every reference to every host cluster, the way qemu-img check's calculate_refcounts does
// (qcow2.md §2.6–2.8), and note structural problems. Used to rebuild the refcounts of a dirty
// (lazy-refcount) image on open, and by the crash lab's judge.
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { ClusterType, classifyL2, decodeCompressed, l1Offset, l2Offset } from '../format/l2-entry.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';

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

export async function walkReferences(img: Qcow2Image): Promise<ReferenceWalk> {
  const h = img.header;
  const cs = img.clusterSize;
  const fileSize = await img.io.size();
  const refs = new Map<number, number>();
  const problems: string[] = [];
  const copied: CopiedFlag[] = [];

  const count = (offset: number, size: number, what: string): void => {
    if (size <= 0) return;
    if (offset + size - fileSize >= cs) {
      problems.push(
        `${what}: region 0x${offset.toString(16)}+0x${size.toString(16)} exceeds the end of the file by a cluster or more`,
      );
      return;
    }
    const last = Math.floor((offset + size - 1) / cs);
    for (let c = Math.floor(offset / cs); c <= last; c++) refs.set(c, (refs.get(c) ?? 0) + 1);
  };

  const walkL1 = async (
    l1: Uint8Array,
    l1Off: number,
    l1Size: number,
    active: boolean,
    label: string,
  ): Promise<void> => {
    if (l1Size === 0) return;
    count(l1Off, l1Size * 8, `${label} L1 table`);
    for (let i = 0; i < l1Size; i++) {
      const hi = u32(l1, i * 8);
      const lo = u32(l1, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if ((hi & C.L1E_RESERVED_MASK_HI) !== 0 || (lo & C.L1E_RESERVED_MASK_LO) !== 0)
        problems.push(`${label} l1[${i}]: reserved bits set`);
      const l2off = l1Offset(hi, lo);
      if (l2off % cs !== 0) {
        problems.push(`${label} l1[${i}]: L2 offset 0x${l2off.toString(16)} not cluster aligned`);
        continue;
      }
      count(l2off, cs, `${label} l1[${i}] L2 table`);
      if (active)
        copied.push({ kind: 'l1', cluster: l2off / cs, copied: (hi & C.OFLAG_COPIED_HI) !== 0, where: `l1[${i}]` });
      if (l2off >= fileSize) continue;
      const l2 = await readPadded(img.io, l2off, cs);
      for (let j = 0; j < img.geo.l2Entries; j++) {
        const eh = u32(l2, j * 8);
        const el = u32(l2, j * 8 + 4);
        if (eh === 0 && el === 0) continue;
        const t = classifyL2(eh, el, false, false);
        if (t === ClusterType.Compressed) {
          if (eh & C.OFLAG_COPIED_HI)
            problems.push(`${label} l2@0x${l2off.toString(16)}[${j}]: COPIED set on a compressed cluster`);
          const d = decodeCompressed(eh, el, img.geo);
          count(d.offset, d.size, `${label} compressed cluster`);
          continue;
        }
        if ((eh & C.L2E_STD_RESERVED_MASK_HI) !== 0 || (el & C.L2E_STD_RESERVED_MASK_LO) !== 0)
          problems.push(`${label} l2@0x${l2off.toString(16)}[${j}]: reserved bits set`);
        if (t !== ClusterType.Normal && t !== ClusterType.ZeroAlloc) continue;
        const off = l2Offset(eh, el);
        if (off % cs !== 0) {
          problems.push(
            `${label} l2@0x${l2off.toString(16)}[${j}]: data offset 0x${off.toString(16)} not cluster aligned`,
          );
          continue;
        }
        count(off, cs, `${label} data cluster`);
        if (active)
          copied.push({
            kind: 'l2',
            cluster: off / cs,
            copied: (eh & C.OFLAG_COPIED_HI) !== 0,
            where: `l2@0x${l2off.toString(16)}[${j}]`,
          });
      }
    }
  };

  count(0, cs, 'header');
  await walkL1(img.l1, h.l1TableOffset, h.l1Size, true, 'active');

  let snapshotBytes = 0;
  try {
    const { entries, byteLength } = await img.readSnapshots();
    snapshotBytes = byteLength;
    for (const s of entries) {
      if (s.l1TableOffset % cs !== 0) {
        problems.push(`snapshot ${s.id}: L1 offset not cluster aligned`);
        continue;
      }
      if (s.l1Size * 8 > C.QCOW_MAX_L1_SIZE) {
        problems.push(`snapshot ${s.id}: L1 too large`);
        continue;
      }
      const l1 = await readPadded(img.io, s.l1TableOffset, s.l1Size * 8);
      await walkL1(l1, s.l1TableOffset, s.l1Size, false, `snapshot ${s.id}`);
    }
  } catch (e) {
    problems.push(`snapshot table: ${e instanceof Error ? e.message : String(e)}`);
  }
  count(h.snapshotsOffset, snapshotBytes, 'snapshot table');
  count(h.refcountTableOffset, h.refcountTableClusters * cs, 'refcount table');

  const rtEntries = img.reftable.length / 8;
  const nbClusters = Math.ceil(fileSize / cs);
  for (let i = 0; i < rtEntries; i++) {
    const hi = u32(img.reftable, i * 8);
    const lo = u32(img.reftable, i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    if (lo & C.REFT_RESERVED_MASK_LO) {
      problems.push(`reftable[${i}]: reserved bits set`);
      continue;
    }
    const off = hi * 0x1_0000_0000 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
    if (off % cs !== 0) {
      problems.push(`reftable[${i}]: refcount block not cluster aligned`);
      continue;
    }
    if (off / cs >= nbClusters) {
      problems.push(`reftable[${i}]: refcount block 0x${off.toString(16)} outside the image`);
      continue;
    }
    count(off, cs, `refcount block ${i}`);
  }
  return { refs, problems, copied, fileSize };
}
