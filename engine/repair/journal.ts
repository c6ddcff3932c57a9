/**
 * The undo journal: before a repair writes anything, the original bytes of every region it will
 * touch (and the file's original length) are saved in a file outside the image, with SHA-256
 * checksums, and made durable. `undoFromJournal` puts them back byte for byte.
 *
 * File layout: 8-byte magic "Q2DJRNL1", u32 big-endian length of the metadata, the metadata as
 * UTF-8 JSON, then the saved bytes of every region, back to back.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { QCOW2_MAGIC } from '../format/constants.js';
import type { FileIO } from '../io/file-io.js';
import { openInputFile } from '../io/input-file.js';
import { createOutputFile, type OutputFile } from '../io/output-file.js';
import type { PositionalIO } from '../io/positional-io.js';
import { readPadded } from '../io/positional-io.js';
import type { PlannedWrite } from './plan.js';

const MAGIC = 'Q2DJRNL1';

export interface JournalRegion {
  offset: number;
  length: number;
  /** Bytes of this region that existed before the repair (the rest lay past the original end of file). */
  savedLength: number;
  /** Where its saved bytes start in the data part. */
  dataOffset: number;
  /** SHA-256 of the saved bytes. */
  sha256: string;
  /** SHA-256 of the region (over `savedLength` bytes) after each write touching it, in order. */
  statesSha256: string[];
  /** SHA-256 of the region (over `savedLength` bytes) as the finished repair leaves it. */
  repairedSha256: string;
}

export interface JournalMeta {
  format: 1;
  image: string;
  dev: number;
  ino: number;
  originalLength: number;
  createdAt: string;
  regions: JournalRegion[];
  dataSha256: string;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Merge the byte ranges of the writes into sorted, disjoint regions. */
export function regionsOf(writes: PlannedWrite[]): Array<{ offset: number; length: number }> {
  const r = writes
    .map((w) => ({ start: w.offset, end: w.offset + w.newBytes.length }))
    .sort((a, b) => a.start - b.start);
  const out: Array<{ offset: number; length: number }> = [];
  for (const x of r) {
    const last = out[out.length - 1];
    if (last && x.start <= last.offset + last.length) last.length = Math.max(last.length, x.end - last.offset);
    else out.push({ offset: x.start, length: x.end - x.start });
  }
  return out;
}

/** Default journal path: next to the image, stamped with the time. */
export function defaultJournalPath(imagePath: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return `${resolve(imagePath)}.repair-journal-${stamp}`;
}

/**
 * Build the journal for `writes` against the image as it is now, write it to `path` and make it
 * durable (file and directory fsync). Throws (one line) if it cannot; nothing is written to the image.
 */
export async function writeJournal(
  path: string,
  imagePath: string,
  io: PositionalIO,
  writes: PlannedWrite[],
  root?: string,
): Promise<JournalMeta> {
  const originalLength = await io.size();
  const st = await stat(imagePath);
  const regions: JournalRegion[] = [];
  const chunks: Uint8Array[] = [];
  let dataOffset = 0;
  for (const { offset, length } of regionsOf(writes)) {
    const savedLength = Math.max(0, Math.min(length, originalLength - offset));
    const saved = savedLength > 0 ? await readPadded(io, offset, savedLength) : new Uint8Array(0);
    // Replay the writes on a copy of the region, recording each intermediate state's checksum, so
    // undo can tell "interrupted repair" from "changed by someone else since".
    const work = saved.slice();
    const states: string[] = [];
    for (const w of writes) {
      const a = Math.max(w.offset, offset);
      const b = Math.min(w.offset + w.newBytes.length, offset + savedLength);
      if (w.offset + w.newBytes.length <= offset || w.offset >= offset + length) continue;
      if (b > a) work.set(w.newBytes.subarray(a - w.offset, b - w.offset), a - offset);
      states.push(sha256(work));
    }
    regions.push({
      offset,
      length,
      savedLength,
      dataOffset,
      sha256: sha256(saved),
      statesSha256: states,
      repairedSha256: sha256(work),
    });
    chunks.push(saved);
    dataOffset += savedLength;
  }
  const data = Buffer.concat(chunks);
  const meta: JournalMeta = {
    format: 1,
    image: resolve(imagePath),
    dev: st.dev,
    ino: st.ino,
    originalLength,
    createdAt: new Date().toISOString(),
    regions,
    dataSha256: sha256(data),
  };
  const metaBytes = Buffer.from(JSON.stringify(meta), 'utf8');
  const head = Buffer.alloc(12);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32BE(metaBytes.length, 8);
  const fail = (e: unknown): Error =>
    new Error(`cannot write the undo journal ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  let out: OutputFile;
  try {
    out = await createOutputFile(path, { root });
  } catch (e) {
    throw fail(e);
  }
  try {
    await out.io.write(0, Buffer.concat([head, metaBytes, data]));
    await out.commit();
  } catch (e) {
    await out.discard();
    throw fail(e);
  }
  await syncDir(dirname(path));
  return meta;
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Some file systems refuse fsync on a directory; the file itself is synced.
  }
}

export interface LoadedJournal {
  meta: JournalMeta;
  data: Buffer;
}

/** Read and verify a journal (magic, metadata, data checksum, every region's checksum). */
export async function readJournal(path: string): Promise<LoadedJournal> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new Error(`cannot read journal ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC)
    throw new Error(`not a qcow2-doctor journal: ${path} (magic)`);
  const metaLen = buf.readUInt32BE(8);
  if (12 + metaLen > buf.length) throw new Error(`journal truncated: ${path} (metadata length ${metaLen})`);
  let meta: JournalMeta;
  try {
    meta = JSON.parse(buf.toString('utf8', 12, 12 + metaLen)) as JournalMeta;
  } catch {
    throw new Error(`journal metadata unreadable: ${path}`);
  }
  if (meta.format !== 1 || !Array.isArray(meta.regions))
    throw new Error(`unsupported journal format: ${path} (format ${String(meta.format)})`);
  checkMetaShape(meta, path);
  const data = buf.subarray(12 + metaLen);
  if (sha256(data) !== meta.dataSha256) throw new Error(`journal data checksum mismatch: ${path}`);
  for (const r of meta.regions) {
    if (r.dataOffset + r.savedLength > data.length)
      throw new Error(`journal truncated: ${path} (region at 0x${r.offset.toString(16)})`);
    if (sha256(data.subarray(r.dataOffset, r.dataOffset + r.savedLength)) !== r.sha256)
      throw new Error(`journal region checksum mismatch: ${path} (region at 0x${r.offset.toString(16)})`);
  }
  return { meta, data };
}

export interface UndoResult {
  regionsRestored: number;
  bytesRestored: number;
  originalLength: number;
}

/**
 * Put the original bytes back. Refuses (one line, nothing written) when a region holds content the
 * repair never wrote, i.e. the image changed since (unless `force`).
 */
export async function undoFromJournal(
  j: LoadedJournal,
  io: PositionalIO,
  opts: { force?: boolean } = {},
): Promise<UndoResult> {
  const { meta, data } = j;
  if (!opts.force) {
    for (const [i, r] of meta.regions.entries()) {
      if (r.savedLength === 0) continue;
      const now = sha256(await readPadded(io, r.offset, r.savedLength));
      // The repaired bytes, or (an interrupted repair) the original or a state in between.
      if (now !== r.repairedSha256 && now !== r.sha256 && !r.statesSha256.includes(now))
        throw new Error(
          `refusing to undo: the image changed since the repair: bytes at 0x${r.offset.toString(16)} (+${r.savedLength}) do not match regions[${i}].repairedSha256 ${r.repairedSha256.slice(0, 16)}… (now ${now.slice(0, 16)}…); use --force to restore anyway`,
        );
    }
  }
  let bytes = 0;
  for (const r of meta.regions) {
    if (r.savedLength === 0) continue;
    await io.write(r.offset, data.subarray(r.dataOffset, r.dataOffset + r.savedLength));
    bytes += r.savedLength;
  }
  if ((await io.size()) !== meta.originalLength) await io.truncate(meta.originalLength);
  await io.flush();
  for (const r of meta.regions) {
    if (r.savedLength === 0) continue;
    if (sha256(await readPadded(io, r.offset, r.savedLength)) !== r.sha256)
      throw new Error(`undo verification failed at 0x${r.offset.toString(16)}`);
  }
  return { regionsRestored: meta.regions.length, bytesRestored: bytes, originalLength: meta.originalLength };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isSha = (v: unknown): boolean => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);

/** Every field a restore acts on, checked before it is trusted (one line naming the field). */
function checkMetaShape(meta: JournalMeta, path: string): void {
  const bad = (field: string, value: unknown): Error =>
    new Error(`journal metadata invalid: ${path} (${field} = ${JSON.stringify(value)?.slice(0, 80)})`);
  if (typeof meta.image !== 'string' || meta.image === '') throw bad('image', meta.image);
  for (const f of ['dev', 'ino', 'originalLength'] as const) if (!isCount(meta[f])) throw bad(f, meta[f]);
  if (!meta.regions.some((r) => isCount(r?.savedLength) && r.savedLength > 0))
    throw bad('regions', `${meta.regions.length} region(s), none with saved bytes`);
  meta.regions.forEach((r, i) => {
    for (const f of ['offset', 'length', 'savedLength', 'dataOffset'] as const)
      if (!isCount(r[f])) throw bad(`regions[${i}].${f}`, r[f]);
    if (r.savedLength > r.length) throw bad(`regions[${i}].savedLength`, r.savedLength);
    if (r.offset + r.savedLength > meta.originalLength) throw bad(`regions[${i}].offset`, r.offset);
    if (!isSha(r.sha256)) throw bad(`regions[${i}].sha256`, r.sha256);
    if (!Array.isArray(r.statesSha256) || !r.statesSha256.every(isSha))
      throw bad(`regions[${i}].statesSha256`, r.statesSha256);
    if (!isSha(r.repairedSha256)) throw bad(`regions[${i}].repairedSha256`, r.repairedSha256);
  });
}

/**
 * Open the file a journal restores, refusing (one line, nothing written) unless it is the very
 * file the repair wrote: a regular file, the device and inode the journal recorded, no shorter
 * than before the repair (a repair only grows a file), and a qcow2 image. A journal from
 * elsewhere therefore cannot truncate or overwrite an unrelated file it names.
 */
export async function openJournalTarget(meta: JournalMeta, imagePath: string): Promise<FileIO> {
  const io = await openInputFile(imagePath, { write: true });
  try {
    const st = await stat(`/proc/self/fd/${io.fd}`).catch(() => stat(imagePath));
    if (st.dev !== meta.dev || st.ino !== meta.ino)
      throw new Error(
        `refusing to undo: ${imagePath} is not the file this journal was written for (device ${st.dev} inode ${st.ino}, the journal names device ${meta.dev} inode ${meta.ino})`,
      );
    if (st.size < meta.originalLength)
      throw new Error(
        `refusing to undo: ${imagePath} is shorter (${st.size} bytes) than before the repair (${meta.originalLength}); a repair never shrinks a file`,
      );
    const head = await io.read(0, 4);
    if (head.length < 4 || new DataView(head.buffer, head.byteOffset, 4).getUint32(0) !== QCOW2_MAGIC)
      throw new Error(`refusing to undo: ${imagePath} is not a qcow2 image`);
    return io;
  } catch (e) {
    await io.close();
    throw e;
  }
}

/**
 * The message of a repair that stopped on a write error: the image is left marked corrupt, but
 * the journal holds every byte it replaced, so it can be put back exactly.
 */
export function interruptedRepairMessage(e: unknown, journalPath: string | undefined): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const why =
    code === 'ENOSPC'
      ? 'the disk is full (ENOSPC)'
      : code
        ? `a write failed (${code})`
        : `it failed (${(e as Error)?.message ?? String(e)})`;
  if (journalPath === undefined)
    return `the repair stopped because ${why}; the image may be marked corrupt and no undo journal was kept`;
  return `the repair stopped because ${why}; the image is marked corrupt until restored, and it is safe to restore: every byte it replaced is in the journal. Free some space, then run: qcow2-doctor undo ${shellWord(journalPath)}`;
}

/** A path as one shell word (quoted only when it needs to be). */
function shellWord(p: string): string {
  return /^[\w./+:@-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`;
}
