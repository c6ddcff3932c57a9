/**
 * `--output-image COPY`: repair a copy and leave the original untouched. A reflink (shared extents,
 * instant, no space) is tried first; otherwise a copy that keeps holes (all-zero chunks are skipped
 * and the length set by truncate), so a sparse 100 GiB image does not become 100 GiB of zeros.
 */
import { constants } from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { createOutputFile, OutputExistsError, type OutputFile } from '../io/output-file.js';

export type CopyMethod = 'reflink' | 'sparse-copy';

const CHUNK = 1 << 20;

function allZero(b: Uint8Array, n: number): boolean {
  // Compare 8 bytes at a time where aligned.
  const words = Math.floor(n / 8);
  const v = new BigUint64Array(b.buffer, b.byteOffset, words);
  for (let i = 0; i < words; i++) if (v[i] !== 0n) return false;
  for (let i = words * 8; i < n; i++) if (b[i] !== 0) return false;
  return true;
}

export async function copyImage(src: string, dst: string, root?: string): Promise<CopyMethod> {
  let out: OutputFile;
  try {
    out = await createOutputFile(dst, { root });
  } catch (e) {
    if (e instanceof OutputExistsError) throw new Error(`refusing to overwrite ${dst}: it already exists`);
    throw new Error(`cannot create ${dst}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    // Into the new, empty temporary file (the held folder's path): a reflink shares extents.
    await copyFile(src, out.tempPath, constants.COPYFILE_FICLONE_FORCE);
    await out.commit();
    return 'reflink';
  } catch (e) {
    if (e instanceof OutputExistsError) throw new Error(`refusing to overwrite ${dst}: it already exists`);
    // No reflink here (ENOTSUP, EXDEV, EINVAL, ...): sparse copy below, into a fresh temporary
    // file (a failed copyFile removes the one it was given).
    await out.discard();
    out = await createOutputFile(dst, { root });
  }
  const input = await open(src, 'r');
  const output = out.io;
  try {
    const size = (await input.stat()).size;
    const buf = new Uint8Array(CHUNK);
    for (let pos = 0; pos < size; pos += CHUNK) {
      const { bytesRead } = await input.read(buf, 0, Math.min(CHUNK, size - pos), pos);
      if (bytesRead === 0) break;
      if (!allZero(buf, bytesRead)) await output.write(pos, buf.subarray(0, bytesRead));
    }
    await output.truncate(size);
    await out.commit();
  } catch (e) {
    await out.discard();
    if (e instanceof OutputExistsError) throw new Error(`refusing to overwrite ${dst}: it already exists`);
    throw e;
  } finally {
    await input.close();
  }
  return 'sparse-copy';
}
