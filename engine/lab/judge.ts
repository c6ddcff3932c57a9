// The lab's verdict on one image's metadata: the project's checker (QEMU's semantics) plus an
// independent reference walk (engine/write/references.ts) as a second opinion.
//
// One deliberate refinement of QEMU's count: a COPIED flag that disagrees with its refcount is a
// "corruption" to qemu-img, but it is harmless when the cluster has at most one reference — the
// flag only allows or forbids writing in place, and with one referrer both are safe. Snapshot
// create/delete/revert must pass through such a state (refcount and flag live in different sectors;
// QEMU's own snapshot code has the same windows). Only COPIED set on a cluster with two or more
// references can damage data; that stays a hard corruption.
import { checkImage, openForCheck } from '../check/index.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import { countReferences } from '../write/references.js';
import { Qcow2Writer } from '../write/writer.js';

export interface MetadataVerdict {
  /** Corruptions that matter (everything qemu-img counts, minus harmless COPIED disagreements). */
  corruptions: number;
  /** qemu-img's own corruption count. */
  qemuCorruptions: number;
  /** Harmless COPIED disagreements (see above). */
  copiedBenign: number;
  leaks: number;
  checkErrors: number;
  /** The image had the dirty bit set (lazy refcounts) and was repaired on open first. */
  wasDirty: boolean;
  /** Up to a few lines describing the problems. */
  details: string[];
}

export interface JudgeOptions {
  /** Repair a dirty image on open (as a read-write open does) before judging. Default true. */
  repairDirty?: boolean;
}

/** Judge the metadata of the image in `io` (which may be modified only to repair a dirty image). */
export async function judgeMetadata(io: PositionalIO, opts: JudgeOptions = {}): Promise<MetadataVerdict> {
  const v: MetadataVerdict = {
    corruptions: 0,
    qemuCorruptions: 0,
    copiedBenign: 0,
    leaks: 0,
    checkErrors: 0,
    wasDirty: false,
    details: [],
  };
  const hard = (line: string): void => {
    if (v.details.length < 8) v.details.push(line);
  };
  let img: Qcow2Image;
  try {
    img = await openForCheck(io);
    if (img.isDirty) {
      v.wasDirty = true;
      if (opts.repairDirty ?? true) {
        const w = await Qcow2Writer.open(io);
        await w.close();
        img = await openForCheck(io);
      }
    }
  } catch (e) {
    v.corruptions = 1;
    hard(`cannot open: ${e instanceof Error ? e.message : String(e)}`);
    return v;
  }

  const lines: string[] = [];
  const r = await checkImage(img, {
    onMessage: (l) => {
      if (lines.length < 50) lines.push(l);
    },
  });
  v.qemuCorruptions = r.counters.corruptions;
  v.leaks = r.counters.leaks;
  v.checkErrors = r.counters.checkErrors + (r.failed !== undefined ? 1 : 0);
  let checkerCopied = 0;
  for (const a of r.anomalies) if (a.kind === 'copied-l1' || a.kind === 'copied-l2') checkerCopied += a.count;

  // Second opinion, and the COPIED classification.
  const fresh = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const walk = await countReferences(fresh);
  let mine = walk.problems.length;
  for (const p of walk.problems) hard(p);
  for (const [c, refs] of walk.refs) {
    let rc: number;
    try {
      rc = await fresh.refcount(c);
    } catch (e) {
      mine++;
      hard(`refcount of cluster ${c} unreadable: ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    if (rc < refs) {
      mine++;
      hard(`cluster ${c} refcount=${rc} references=${refs}`);
    }
  }
  let harmful = 0;
  let benign = 0;
  for (const f of walk.copied) {
    let rc = 0;
    try {
      rc = await fresh.refcount(f.cluster);
    } catch {
      continue;
    }
    if ((rc === 1) === f.copied) continue;
    const refs = walk.refs.get(f.cluster) ?? 0;
    if (f.copied && refs >= 2) {
      harmful++;
      hard(`${f.where}: COPIED set on cluster ${f.cluster} with ${refs} references (refcount ${rc})`);
    } else {
      benign++;
    }
  }
  v.copiedBenign = benign;
  // What qemu-img counts beyond the COPIED flags we classified (a disagreement between the two
  // counts is itself suspicious and counted).
  const qemuOther = r.counters.corruptions - checkerCopied + Math.abs(checkerCopied - (benign + harmful));
  if (qemuOther > 0) for (const l of lines) if (/^ERROR/.test(l) && !/OFLAG_COPIED/.test(l)) hard(`qemu: ${l}`);
  v.corruptions = Math.max(qemuOther + harmful, mine) + v.checkErrors;
  return v;
}
