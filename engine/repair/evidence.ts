/**
 * Evidence before trust: when two structures claim the same cluster, the cluster's content and the
 * other structures decide which claim is true, never the order a walk met them. A cluster whose
 * content validates as the table a pointer expects is that table.
 */
import { u32 } from '../format/bytes.js';
import { type ClassifyContext, looksLikeRefcountBlock, pointerTableSummary } from '../format/cluster-content.js';
import { getRefcount } from '../format/refcount.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { readPadded } from '../io/positional-io.js';
import { l1EntryOffset } from './plan-context.js';
import type { RefWalk } from './references.js';

function classifyContext(img: Qcow2Image, fileSize: number): ClassifyContext {
  return {
    clusterSize: img.clusterSize,
    fileSize,
    targetLimit: fileSize,
    refcountOrder: img.geo.refcountOrder,
    extendedL2: img.geo.extendedL2,
  };
}

/**
 * Whether `buf` (one cluster, at host cluster `c`) validates as an L2 table of this image: every
 * entry empty or a plausible descriptor (reserved bits clear, aligned offsets inside the file, no
 * table pointing at itself), at least one mapping data. Returns the number of data clusters mapped
 * (0 when it does not validate).
 */
export function l2TableEvidence(buf: Uint8Array, c: number, img: Qcow2Image, fileSize: number): number {
  const summary = pointerTableSummary(buf, 0, classifyContext(img, fileSize), c * img.clusterSize);
  if (!summary || summary.beyondEof > 0) return 0;
  return summary.entries - summary.zeroFlag;
}

/**
 * Whether `buf` reads as the refcount block of group `group`: it looks like a refcount block, and it
 * counts every cluster of its group the walk found a reference to (a real block, even a damaged
 * one, counts at least the header, tables and data that are plainly in use).
 */
export function refblockEvidence(buf: Uint8Array, group: number, img: Qcow2Image, walk: RefWalk): boolean {
  if (!looksLikeRefcountBlock(buf, 0, classifyContext(img, walk.fileSize))) return false;
  const entries = img.geo.refcountBlockEntries;
  let referenced = 0;
  let counted = 0;
  for (let j = 0; j < entries; j++) {
    const c = group * entries + j;
    if (c >= walk.hostClusters) break;
    if ((walk.refs[c] ?? 0) === 0) continue;
    referenced++;
    if (getRefcount(buf, j, img.geo.refcountOrder) > 0) counted++;
  }
  return referenced === 0 || counted * 2 > referenced;
}

/** A refcount table entry whose block is in truth a live L2 table: the refcount table is wrong. */
export interface MisplacedRefblock {
  /** Refcount table index. */
  index: number;
  /** Byte address of the refcount table entry. */
  entry: number;
  /** The cluster it names (the L2 table). */
  cluster: number;
  /** The L1 entries (byte addresses) that point at it as their L2 table. */
  l1Entries: number[];
  /** Data clusters the L2 table maps. */
  dataClusters: number;
}

/**
 * Refcount table entries that name a cluster an L1 entry also names, where the cluster's content
 * validates as an L2 table and not as that refcount group's block. The L1 entry is right; the
 * refcount table entry is the wrong claimant (the refcount structure is rebuilt, as QEMU does).
 */
export async function findMisplacedRefblocks(img: Qcow2Image, walk: RefWalk): Promise<MisplacedRefblock[]> {
  const cs = img.clusterSize;
  const out = new Map<number, MisplacedRefblock>();
  for (const b of walk.bad) {
    if (b.kind !== 'l1-into-metadata') continue;
    const c = Math.floor(l1EntryOffset(b) / cs);
    if (walk.metadata.get(c) !== 'refcount block' || l1EntryOffset(b) % cs !== 0) continue;
    const known = out.get(c);
    if (known) {
      known.l1Entries.push(b.entry);
      continue;
    }
    const rb = walk.refblocks.find((r) => r.status === 'ok' && r.offset === c * cs);
    if (!rb) continue;
    const buf = await readPadded(img.io, c * cs, cs);
    const data = l2TableEvidence(buf, c, img, walk.fileSize);
    if (data === 0 || refblockEvidence(buf, rb.index, img, walk)) continue;
    out.set(c, {
      index: rb.index,
      entry: img.header.refcountTableOffset + rb.index * 8,
      cluster: c,
      l1Entries: [b.entry],
      dataClusters: data,
    });
  }
  return [...out.values()];
}

/** Whether the 8-byte entry at `entry` of `buf` is zero (an unused table slot). */
export function isEmptyEntry(buf: Uint8Array, index: number): boolean {
  return u32(buf, index * 8) === 0 && u32(buf, index * 8 + 4) === 0;
}
