// Our own structured findings. Every QEMU finding and every extra diagnostic becomes an Anomaly
// with a plain-language explanation and the fix; consecutive clusters of the same kind merge into
// one run so that millions of findings stay a handful of records.
import type { Anomaly, Referrer, Severity } from './types.js';

interface KindInfo {
  severity: Severity;
  explanation: string;
  fix: string;
  beyondQemu?: boolean;
}

/** What each kind means and how it is fixed, in words a non-expert understands. */
export const ANOMALY_KINDS: Record<string, KindInfo> = {
  'lost-table': {
    severity: 'error',
    beyondQemu: true,
    explanation:
      'Nothing refers to this table any more, but it still maps guest data: QEMU counts it and its data as leaks, yet the data is at risk.',
    fix: 'Do not repair leaks with `qemu-img check -r leaks`: it would free the table and the data it maps (`qcow2-doctor check -r leaks` keeps them). Run `qcow2-doctor check -r all` (it re-links lost tables where their place is certain) or `qcow2-doctor salvage` to copy the data out.',
  },
  'orphaned-data': {
    severity: 'warning',
    beyondQemu: true,
    explanation:
      'Nothing maps this cluster any more, yet it holds data: possibly guest data a damaged table lost. QEMU counts it as a leak and its repair frees it.',
    fix: 'Copy the data out with `qcow2-doctor salvage` first; `qcow2-doctor check -r leaks` keeps these clusters; `-r all` and `qemu-img check -r leaks` free them.',
  },
  'leaked-cluster': {
    severity: 'leak',
    explanation: 'This part of the file is marked as in use, but nothing refers to it: it only wastes space.',
    fix: 'Mark it free (repair leaks); no data is lost.',
  },
  'refcount-too-low': {
    severity: 'error',
    explanation:
      'More tables point at this part of the file than its use count says, so a later write could overwrite data that is still needed.',
    fix: 'Raise the use count to the number of references, or (for a cross-link) give each user its own copy.',
  },
  'refcount-zero-referenced': {
    severity: 'error',
    explanation:
      'This part of the file holds something that is in use, but the use count says it is free, so new data could be written over it.',
    fix: 'Rebuild the reference counts from the tables.',
  },
  'l1-reserved-bits': {
    severity: 'error',
    explanation: 'An entry of the top-level table has bits set that must be zero, so the table may be damaged.',
    fix: '`check -r all` clears the bits (the mapping QEMU reads stays; qemu-img leaves the error); an entry with another fault too is for inspection by hand.',
  },
  'l2-table-unaligned': {
    severity: 'error',
    explanation:
      'The top-level table points to a second-level table at a position that is not on a cluster boundary, so that pointer is damaged.',
    fix: 'No safe automatic fix: the data this table maps cannot be trusted; find the real table or drop the pointer.',
  },
  'l2-reserved-bits': {
    severity: 'error',
    explanation: 'A mapping entry has bits set that must be zero, so it may be damaged.',
    fix: '`check -r all` clears the bits (the mapping QEMU reads stays; qemu-img leaves the error); an entry with another fault too is for inspection by hand.',
  },
  'compressed-copied': {
    severity: 'error',
    explanation: 'A compressed block is marked as writable in place, which is never allowed for compressed data.',
    fix: 'Clear the flag on the entry.',
  },
  'compressed-with-data-file': {
    severity: 'error',
    explanation:
      'The image keeps its data in a separate file, which cannot hold compressed blocks, yet an entry says compressed.',
    fix: 'No automatic fix: the entry is invalid; that part of the disk must be restored from elsewhere.',
  },
  'compressed-with-bitmap': {
    severity: 'error',
    explanation: 'A compressed block carries a sub-block map, which compressed blocks must not have.',
    fix: 'Clear the sub-block map of the entry.',
  },
  'subcluster-bitmap-corrupt': {
    severity: 'error',
    explanation: 'A block says some of its pieces are both written and zero at once, which is contradictory.',
    fix: 'No automatic fix: decide per piece whether it holds data or zeros.',
  },
  'prealloc-unaligned': {
    severity: 'error',
    explanation: 'A zeroed block reserves space at a position that is not on a cluster boundary.',
    fix: 'Turn the entry into a plain zero block (no data is lost: it reads as zeros).',
  },
  'data-unaligned': {
    severity: 'error',
    explanation:
      'A data block points to a position that is not on a cluster boundary, so the pointer is damaged and reads return the wrong bytes.',
    fix: 'No safe automatic fix: that part of the disk must be recovered by hand.',
  },
  'unallocated-with-bitmap': {
    severity: 'error',
    explanation: 'A block that has no storage claims that some of its pieces hold data.',
    fix: 'Clear the data bits of the sub-block map.',
  },
  'beyond-eof': {
    severity: 'error',
    explanation: 'A table points past the end of the file, so whatever it refers to is missing.',
    fix: 'No automatic fix for the pointer; its data is lost unless found elsewhere.',
  },
  'refcount-overflow': {
    severity: 'error',
    explanation: 'More references point at this block than its use counter can hold.',
    fix: 'Widen the counters (qemu-img amend -o refcount_bits=16) or copy the image.',
  },
  'snapshots-with-data-file': {
    severity: 'error',
    explanation:
      'The image keeps its data in a separate file, which does not support internal snapshots, yet it has some.',
    fix: 'Delete the snapshots.',
  },
  'snapshot-l1-unaligned': {
    severity: 'error',
    explanation:
      'A snapshot points to its table at a position that is not on a cluster boundary, so the snapshot is damaged.',
    fix: 'Delete the snapshot entry (QEMU would free its blocks but keep the broken entry).',
  },
  'snapshot-l1-too-large': {
    severity: 'error',
    explanation: 'A snapshot claims a table far larger than allowed, so the snapshot entry is damaged.',
    fix: 'Delete the snapshot entry.',
  },
  'snapshot-incomplete': {
    severity: 'error',
    explanation: 'A snapshot entry lacks fields every version-3 image must have.',
    fix: 'Rewrite the snapshot table with the missing fields filled in.',
  },
  'reftable-reserved-bits': {
    severity: 'error',
    explanation: 'An entry of the reference-count table has bits set that must be zero.',
    fix: 'Rebuild the reference counts.',
  },
  'refblock-unaligned': {
    severity: 'error',
    explanation: 'The reference-count table points to a block at a position that is not on a cluster boundary.',
    fix: 'Rebuild the reference counts.',
  },
  'refblock-outside': {
    severity: 'error',
    explanation: 'The reference-count table points to a block past the end of the file.',
    fix: 'Grow the file to cover it, or rebuild the reference counts.',
  },
  'refblock-shared': {
    severity: 'error',
    explanation: 'A reference-count block is also used by something else, so writes to one damage the other.',
    fix: 'Rebuild the reference counts in fresh space.',
  },
  'copied-l1': {
    severity: 'error',
    explanation: 'A top-level entry says its table may be written in place, but the use count disagrees.',
    fix: 'Set or clear the flag to match the use count.',
  },
  'copied-l2': {
    severity: 'error',
    explanation: 'A mapping entry says its block may be written in place, but the use count disagrees.',
    fix: 'Set or clear the flag to match the use count.',
  },
  'refcount-unreadable': {
    severity: 'error',
    explanation: 'The use count of this block cannot be read because the block that holds it is misplaced.',
    fix: 'Rebuild the reference counts.',
  },
  'bitmap-invalid': {
    severity: 'error',
    explanation:
      'A persistent bitmap (the record of changed blocks used by backups) is damaged, so QEMU refuses to check or open the image.',
    fix: 'Remove the damaged bitmap (qemu-img bitmap --remove); the next backup must then be a full one.',
  },
  'v2-zero-flag': {
    severity: 'warning',
    beyondQemu: true,
    explanation:
      'A version-2 image uses the zero flag, which only version 3 understands: reading this part fails in QEMU.',
    fix: 'Write real zeros there, or upgrade the image to version 3.',
  },
  'refcount-beyond-eof': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'Blocks past the end of the file are marked as in use.',
    fix: 'Mark them free.',
  },
  'compressed-undecodable': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'A compressed block cannot be decompressed, so reading it fails.',
    fix: 'No automatic fix: that part of the disk must be restored from elsewhere.',
  },
  'backing-file-missing': {
    severity: 'warning',
    beyondQemu: true,
    explanation:
      'The backing file this image builds on cannot be found, so parts of the disk cannot be read (qemu-img refuses to even check the image).',
    fix: 'Put the backing file back, or point the image at it with qemu-img rebase -u.',
  },
  'data-file-missing': {
    severity: 'warning',
    beyondQemu: true,
    explanation:
      "The separate data file holding this disk's contents cannot be found (qemu-img refuses to even check the image).",
    fix: 'Put the data file back next to the image, or record its new name with qemu-img amend -o data_file=...',
  },
  'bitmap-tail-bits': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'A persistent bitmap has bits set past the end of the disk, which the format forbids.',
    fix: "Clear the bits past the end of the disk in the bitmap's last cluster.",
  },
  'bitmap-duplicate-name': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'Two persistent bitmaps have the same name.',
    fix: 'Remove or rename one of them.',
  },
  'snapshot-disk-size': {
    severity: 'info',
    beyondQemu: true,
    explanation: 'A snapshot was taken when the disk had another size; QEMU refuses to revert to it.',
    fix: 'Resize the disk to the snapshot size before reverting.',
  },
  'external-data-mismatch': {
    severity: 'warning',
    beyondQemu: true,
    explanation:
      'With a separate data file, each block must sit at the same position as in the disk, but this one does not: reading it fails in QEMU.',
    fix: 'Point the entry at its own position (after copying the data there).',
  },
  'metadata-overlap': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'Two kinds of image bookkeeping claim the same block.',
    fix: 'Rebuild the structure that is not authoritative in fresh space.',
  },
  'dirty-bit': {
    severity: 'info',
    beyondQemu: true,
    explanation:
      'The image was not closed cleanly while lazy reference counts were on, so its use counts may be stale.',
    fix: 'Repair rebuilds the counts and clears the flag.',
  },
  'corrupt-bit': {
    severity: 'info',
    beyondQemu: true,
    explanation: 'QEMU marked this image as corrupt earlier and refuses to open it for writing.',
    fix: 'Repair clears the flag once nothing is wrong any more.',
  },
  'bitmaps-inconsistent': {
    severity: 'warning',
    beyondQemu: true,
    explanation: 'A program without bitmap support changed the file, so all persistent bitmaps are stale.',
    fix: 'Repair drops the bitmaps and frees their space.',
  },
};

/** Upper bound on stored anomaly records; beyond it, runs are only counted. */
const MAX_RECORDS = 10000;

export interface AnomalyInput {
  cluster?: number;
  refcount?: number;
  references?: number;
  referrer?: Referrer;
  qemuMessage?: string;
}

export class AnomalyCollector {
  readonly list: Anomaly[] = [];
  /** Findings that did not fit in MAX_RECORDS, per kind. */
  readonly dropped = new Map<string, number>();
  private last: Anomaly | undefined;

  add(kind: string, a: AnomalyInput = {}): void {
    const info = ANOMALY_KINDS[kind]!;
    const l = this.last;
    if (
      l &&
      l.kind === kind &&
      a.cluster !== undefined &&
      l.firstCluster !== undefined &&
      a.cluster === l.firstCluster + l.count
    ) {
      l.count++;
      return;
    }
    if (this.list.length >= MAX_RECORDS) {
      this.dropped.set(kind, (this.dropped.get(kind) ?? 0) + 1);
      this.last = undefined;
      return;
    }
    const rec: Anomaly = { kind, severity: info.severity, count: 1, explanation: info.explanation, fix: info.fix };
    if (a.cluster !== undefined) rec.firstCluster = a.cluster;
    if (a.refcount !== undefined) rec.refcount = a.refcount;
    if (a.references !== undefined) rec.references = a.references;
    if (a.referrer) rec.referrers = [a.referrer];
    if (a.qemuMessage !== undefined) rec.qemuMessage = a.qemuMessage;
    if (info.beyondQemu) rec.beyondQemu = true;
    this.list.push(rec);
    this.last = rec;
  }

  /** Break the current run (the next finding starts a new record). */
  cut(): void {
    this.last = undefined;
  }

  finish(): Anomaly[] {
    for (const [kind, n] of this.dropped) {
      const info = ANOMALY_KINDS[kind]!;
      this.list.push({
        kind,
        severity: info.severity,
        count: n,
        explanation: `${info.explanation} (${n} more findings of this kind not listed individually)`,
        fix: info.fix,
        beyondQemu: info.beyondQemu,
      });
    }
    this.dropped.clear();
    return this.list;
  }
}
