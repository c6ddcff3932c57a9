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
    regions.push({ offset, length, savedLength, dataOffset, sha256: sha256(saved), statesSha256: states });
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
  let fh;
  try {
    fh = await open(path, 'wx');
  } catch (e) {
    throw new Error(
      `cannot write the undo journal ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  try {
    await fh.writeFile(Buffer.concat([head, metaBytes, data]));
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw new Error(
      `cannot write the undo journal ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  await fh.close();
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
    for (const r of meta.regions) {
      if (r.savedLength === 0) continue;
      const now = sha256(await readPadded(io, r.offset, r.savedLength));
      if (now !== r.sha256 && !r.statesSha256.includes(now))
        throw new Error(
          `image changed since the repair: region 0x${r.offset.toString(16)} (+${r.savedLength}) holds bytes the repair did not write; use --force to restore anyway`,
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
