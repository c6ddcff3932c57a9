// The snapshot-table pre-check (QEMU's qcow2_check_read_snapshot_table) and the table reader it
// uses: entries read as QEMU reads them (zero-filled past end of file, table size = end of the last
// name, not padded), with QEMU's limits and wording.
import * as C from '../format/constants.js';
import { u16, u32, u64, utf8 } from '../format/bytes.js';
import { readPadded, type PositionalIO } from '../io/positional-io.js';

export interface CheckedSnapshot {
  /** Position in the table (QEMU's "snapshot table entry %i"). */
  index: number;
  /** Byte offset of the entry in the file. */
  entryOffset: number;
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  extraDataSize: number;
  /** Virtual disk size at snapshot time, when the extra data holds it. */
  diskSize?: number;
}

export interface SnapshotPrecheck {
  snapshots: CheckedSnapshot[];
  /** QEMU's s->snapshots_size: from the table start to the end of the last entry's name. */
  tableSize: number;
  corruptions: number;
  checkErrors: number;
  /** Set when QEMU aborts the check here: the strerror text ("File too large", "Invalid argument"). */
  failed?: string;
  /** Lines as QEMU prints them; `program` lines carry qemu-img's "qemu-img: " prefix in QEMU. */
  lines: Array<{ text: string; program: boolean }>;
}

const EFBIG = 'File too large';
const EINVAL = 'Invalid argument';

/** Sequential reader over a byte range of the file, in 1 MiB chunks, zeros past end of file. */
class Cursor {
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  constructor(
    private readonly io: PositionalIO,
    private readonly fileSize: number,
  ) {}

  async bytes(offset: number, length: number): Promise<Uint8Array> {
    if (offset >= this.bufStart && offset + length <= this.bufStart + this.buf.length)
      return this.buf.subarray(offset - this.bufStart, offset - this.bufStart + length);
    const want = Math.max(length, 1024 * 1024);
    this.bufStart = offset;
    this.buf = offset >= this.fileSize ? new Uint8Array(want) : await readPadded(this.io, offset, want);
    return this.buf.subarray(0, length);
  }
}

export async function precheckSnapshotTable(
  io: PositionalIO,
  fileSize: number,
  header: Uint8Array,
  clusterSize: number,
  version: number,
): Promise<SnapshotPrecheck> {
  const r: SnapshotPrecheck = { snapshots: [], tableSize: 0, corruptions: 0, checkErrors: 0, lines: [] };
  const nb = u32(header, C.HDR.nbSnapshots);
  const offset = u64(header, C.HDR.snapshotsOffset);
  // qcow2_validate_table(..., "snapshot table")
  if (nb > C.QCOW_MAX_SNAPSHOTS) {
    r.checkErrors++;
    r.lines.push({ text: 'ERROR snapshot table too large', program: true });
    r.lines.push({
      text: `You can force-remove all ${nb - C.QCOW_MAX_SNAPSHOTS} overhanging snapshots with qemu-img check -r all`,
      program: false,
    });
    r.failed = EFBIG;
    return r;
  }
  if (offset % clusterSize !== 0 || offset + nb * C.SNAPSHOT_ENTRY_FIXED_SIZE > 2 ** 63) {
    r.checkErrors++;
    r.lines.push({ text: 'ERROR snapshot table offset invalid', program: true });
    r.failed = EINVAL;
    return r;
  }
  const cur = new Cursor(io, fileSize);
  let pos = offset;
  for (let i = 0; i < nb; i++) {
    pos = Math.ceil(pos / 8) * 8;
    const fixed = await cur.bytes(pos, C.SNAPSHOT_ENTRY_FIXED_SIZE);
    const entryOffset = pos;
    const l1TableOffset = u64(fixed, 0);
    const l1Size = u32(fixed, 8);
    const idLen = u16(fixed, 12);
    const nameLen = u16(fixed, 14);
    const extraDataSize = u32(fixed, 36);
    pos += C.SNAPSHOT_ENTRY_FIXED_SIZE;
    if (extraDataSize > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      r.checkErrors++;
      r.lines.push({
        text: `ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry ${i}`,
        program: true,
      });
      r.lines.push({ text: 'You can force-remove this extra metadata with qemu-img check -r all', program: false });
      r.failed = EFBIG;
      r.snapshots = [];
      return r;
    }
    const extra = await cur.bytes(pos, Math.min(extraDataSize, 24));
    pos += extraDataSize;
    const idName = await cur.bytes(pos, idLen + nameLen);
    const s: CheckedSnapshot = {
      index: i,
      entryOffset,
      id: utf8(idName, 0, idLen),
      name: utf8(idName, idLen, nameLen),
      l1TableOffset,
      l1Size,
      extraDataSize,
    };
    if (extraDataSize >= 16) s.diskSize = u64(extra, 8);
    pos += idLen + nameLen;
    if (pos - offset > C.QCOW_MAX_SNAPSHOTS_SIZE) {
      r.checkErrors++;
      r.lines.push({ text: 'ERROR failed to read the snapshot table: Snapshot table is too big', program: true });
      r.lines.push({
        text: `You can force-remove all ${nb - i} overhanging snapshots with qemu-img check -r all`,
        program: false,
      });
      r.failed = EFBIG;
      r.snapshots = [];
      return r;
    }
    r.snapshots.push(s);
  }
  r.tableSize = pos - offset;
  if (version >= 3) {
    for (const s of r.snapshots) {
      if (s.extraDataSize < C.SNAPSHOT_EXTRA_V3_MIN) {
        r.corruptions++;
        r.lines.push({ text: `ERROR snapshot table entry ${s.index} is incomplete`, program: false });
      }
    }
  }
  return r;
}
