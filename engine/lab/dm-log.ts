// dm-log-writes logs (the format of Linux's dm-log-writes target and QEMU's blklogwrites driver):
// read one into the lab's write log, and write the lab's write log as one.
//
// Layout, little-endian: sector 0 is the superblock (u64 magic, u64 version = 1, u64 nr_entries,
// u32 sectorsize); from sector 1, entries of one sector each (u64 sector, u64 nr_sectors, u64 flags,
// u64 data_len), a write followed by its nr_sectors data sectors, a discard and a flush by none.
// A write-zeroes is logged as a write of zero sectors. Everything in a log is hostile: each field
// is checked before it is used, and every refusal names the field and its value.
import { Qcow2FormatError } from '../base/errors.js';
import { MemoryIO } from '../io/memory-io.js';
import { type PositionalIO, readPadded } from '../io/positional-io.js';
import type { WriteLogEntry } from '../io/recording-io.js';

export const DM_LOG_MAGIC = 0x6a736677736872n;
export const DM_LOG_VERSION = 1n;
export const DM_LOG_FLUSH = 1n;
export const DM_LOG_FUA = 2n;
export const DM_LOG_DISCARD = 4n;
export const DM_LOG_MARK = 8n;
export const DM_LOG_METADATA = 16n;
const KNOWN_FLAGS = DM_LOG_FLUSH | DM_LOG_FUA | DM_LOG_DISCARD | DM_LOG_MARK | DM_LOG_METADATA;
const MIN_SECTOR = 512;
const MAX_SECTOR = 1 << 20;
/** Largest byte offset an entry may name: past it, offsets stop being exact in a JS number. */
const MAX_OFFSET = 2 ** 52;

export interface DmLogOptions {
  /** Refuse a log whose write data exceed this many bytes (it is all held in memory). Default 1 GiB. */
  maxDataBytes?: number;
  /** Refuse a log with more entries than this. Default 1,000,000. */
  maxEntries?: number;
}

export interface DmLog {
  sectorSize: number;
  /** nr_entries from the superblock. */
  entries: number;
  /** The lab's write log: one item per write, write-zeroes, discard and flush (marks are dropped). */
  log: WriteLogEntry[];
  /** For each item of `log`, the index of the dm-log entry it came from. */
  source: number[];
  /** Entries flagged FUA (read as plain writes: the lab never assumes more durability than a flush gives). */
  fua: number;
}

const fail = (what: string, field: string, value: string | number | bigint): never => {
  throw new Qcow2FormatError(`dm-log-writes log: ${what}`, field, value);
};

/** Read a dm-log-writes log from `io` (only the first nr_entries entries, as the superblock says). */
export async function readDmLog(io: PositionalIO, opts: DmLogOptions = {}): Promise<DmLog> {
  const maxData = opts.maxDataBytes ?? 2 ** 30;
  const maxEntries = opts.maxEntries ?? 1_000_000;
  const fileSize = await io.size();
  if (fileSize < MIN_SECTOR) fail('shorter than a superblock', 'log.size', fileSize);
  const sb = Buffer.from(await io.read(0, MIN_SECTOR));
  const magic = sb.readBigUInt64LE(0);
  if (magic !== DM_LOG_MAGIC) fail('bad magic', 'superblock.magic', `0x${magic.toString(16)}`);
  const version = sb.readBigUInt64LE(8);
  if (version !== DM_LOG_VERSION) fail('unsupported version', 'superblock.version', version);
  const nrEntries = sb.readBigUInt64LE(16);
  const sectorSize = sb.readUInt32LE(24);
  if (sectorSize < MIN_SECTOR || sectorSize > MAX_SECTOR || (sectorSize & (sectorSize - 1)) !== 0)
    fail('sector size is not a power of two in 512..1 MiB', 'superblock.sectorsize', sectorSize);
  const sectorsInFile = Math.floor(fileSize / sectorSize);
  if (nrEntries > BigInt(Math.max(0, sectorsInFile - 1)))
    fail(`more entries than the ${sectorsInFile} sectors of the file hold`, 'superblock.nr_entries', nrEntries);
  if (nrEntries > BigInt(maxEntries)) fail(`more than ${maxEntries} entries`, 'superblock.nr_entries', nrEntries);
  const out: DmLog = { sectorSize, entries: Number(nrEntries), log: [], source: [], fua: 0 };
  let pos = 1; // log sector of the next entry
  let dataBytes = 0;
  for (let i = 0; i < out.entries; i++) {
    if (pos >= sectorsInFile) fail('entry past the end of the file', `entry[${i}].position`, pos);
    const h = Buffer.from(await io.read(pos * sectorSize, 32));
    const sector = h.readBigUInt64LE(0);
    const nrSectors = h.readBigUInt64LE(8);
    const flags = h.readBigUInt64LE(16);
    if ((flags & ~KNOWN_FLAGS) !== 0n) fail('unknown entry flags', `entry[${i}].flags`, `0x${flags.toString(16)}`);
    pos++;
    const add = (e: WriteLogEntry): void => {
      out.log.push(e);
      out.source.push(i);
    };
    if (flags & DM_LOG_MARK) continue;
    // The kernel logs a flush together with the write that carried it; QEMU logs flushes alone.
    if (flags & DM_LOG_FLUSH && nrSectors === 0n) {
      add({ kind: 'flush' });
      continue;
    }
    if (flags & DM_LOG_FLUSH) add({ kind: 'flush' });
    const offset = sector * BigInt(sectorSize);
    const length = nrSectors * BigInt(sectorSize);
    if (offset + length > BigInt(MAX_OFFSET))
      fail('range beyond 4 PiB', `entry[${i}].sector`, `${sector} (+${nrSectors} sectors)`);
    if (flags & DM_LOG_DISCARD) {
      add({ kind: 'discard', offset: Number(offset), length: Number(length) });
      continue;
    }
    if (nrSectors > BigInt(sectorsInFile - pos))
      fail(`data past the end of the file (${sectorsInFile - pos} sectors left)`, `entry[${i}].nr_sectors`, nrSectors);
    dataBytes += Number(length);
    if (dataBytes > maxData) fail(`write data beyond ${maxData} bytes in all`, `entry[${i}].nr_sectors`, nrSectors);
    if (flags & DM_LOG_FUA) out.fua++;
    const data = await io.read(pos * sectorSize, Number(length));
    add({ kind: 'write', offset: Number(offset), data: data.slice() });
    pos += Number(nrSectors);
  }
  return out;
}

/**
 * The lab's write log as a dm-log-writes log. Writes and discards must be whole sectors (the
 * format has no finer unit); truncates cannot be expressed and are refused.
 */
export function encodeDmLog(log: readonly WriteLogEntry[], sectorSize = 512): Uint8Array {
  let sectors = 1;
  for (const e of log) sectors += 1 + (e.kind === 'write' ? e.data.length / sectorSize : 0);
  const out = Buffer.alloc(sectors * sectorSize);
  let pos = 1;
  let n = 0;
  const entry = (sector: number, nr: number, flags: bigint): void => {
    const at = pos * sectorSize;
    out.writeBigUInt64LE(BigInt(sector), at);
    out.writeBigUInt64LE(BigInt(nr), at + 8);
    out.writeBigUInt64LE(flags, at + 16);
    pos++;
    n++;
  };
  const aligned = (offset: number, length: number, i: number): void => {
    if (offset % sectorSize || length % sectorSize)
      throw new Error(`log entry ${i}: ${length} bytes at ${offset} are not whole ${sectorSize}-byte sectors`);
  };
  log.forEach((e, i) => {
    if (e.kind === 'flush') entry(0, 0, DM_LOG_FLUSH);
    else if (e.kind === 'discard') {
      aligned(e.offset, e.length, i);
      entry(e.offset / sectorSize, e.length / sectorSize, DM_LOG_DISCARD);
    } else if (e.kind === 'write') {
      aligned(e.offset, e.data.length, i);
      entry(e.offset / sectorSize, e.data.length / sectorSize, 0n);
      out.set(e.data, pos * sectorSize);
      pos += e.data.length / sectorSize;
    } else throw new Error(`log entry ${i}: a truncate cannot be written to a dm-log-writes log`);
  });
  out.writeBigUInt64LE(DM_LOG_MAGIC, 0);
  out.writeBigUInt64LE(DM_LOG_VERSION, 8);
  out.writeBigUInt64LE(BigInt(n), 16);
  out.writeUInt32LE(sectorSize, 24);
  return out;
}

/**
 * A write log made whole-sector, as a dm-log-writes log needs: each write widened to the sectors
 * it touches with the bytes the disk held there at that point (the log replayed onto `base`), a
 * truncate that grows the file written as zeros. A shrinking truncate cannot be expressed.
 */
export async function sectorAlignedLog(
  base: Uint8Array,
  log: readonly WriteLogEntry[],
  sectorSize = 512,
): Promise<WriteLogEntry[]> {
  const disk = new MemoryIO(base);
  const out: WriteLogEntry[] = [];
  for (const [i, e] of log.entries()) {
    if (e.kind === 'flush') out.push(e);
    else if (e.kind === 'discard') {
      const a = Math.ceil(e.offset / sectorSize) * sectorSize;
      const b = Math.floor((e.offset + e.length) / sectorSize) * sectorSize;
      if (b > a) out.push({ kind: 'discard', offset: a, length: b - a });
    } else if (e.kind === 'truncate') {
      const size = await disk.size();
      if (e.size < size) throw new Error(`log entry ${i}: a truncate to ${e.size} (from ${size}) cannot be logged`);
      const a = Math.floor(size / sectorSize) * sectorSize;
      const b = Math.ceil(e.size / sectorSize) * sectorSize;
      await disk.truncate(e.size);
      if (b > a) out.push({ kind: 'write', offset: a, data: await readPadded(disk, a, b - a) });
    } else {
      await disk.write(e.offset, e.data);
      const a = Math.floor(e.offset / sectorSize) * sectorSize;
      const b = Math.ceil((e.offset + e.data.length) / sectorSize) * sectorSize;
      out.push({ kind: 'write', offset: a, data: await readPadded(disk, a, b - a) });
    }
  }
  return out;
}
