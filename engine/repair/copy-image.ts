/**
 * `--output-image COPY`: repair a copy and leave the original untouched. A reflink (shared extents,
 * instant, no space) is tried first; otherwise a copy that keeps holes (all-zero chunks are skipped
 * and the length set by truncate), so a sparse 100 GiB image does not become 100 GiB of zeros.
 */
import { constants } from 'node:fs';
import { copyFile, open, rm } from 'node:fs/promises';

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

export async function copyImage(src: string, dst: string): Promise<CopyMethod> {
  try {
    await copyFile(src, dst, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
    return 'reflink';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new Error(`refusing to overwrite ${dst}: it already exists`);
    // No reflink here (ENOTSUP, EXDEV, EINVAL, ...): sparse copy below.
  }
  const input = await open(src, 'r');
  let output;
  try {
    output = await open(dst, 'wx');
  } catch (e) {
    await input.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'EEXIST' ? `refusing to overwrite ${dst}: it already exists` : `cannot create ${dst}: ${code}`,
    );
  }
  try {
    const size = (await input.stat()).size;
    const buf = new Uint8Array(CHUNK);
    for (let pos = 0; pos < size; pos += CHUNK) {
      const { bytesRead } = await input.read(buf, 0, Math.min(CHUNK, size - pos), pos);
      if (bytesRead === 0) break;
      if (!allZero(buf, bytesRead)) await output.write(buf, 0, bytesRead, pos);
    }
    await output.truncate(size);
    await output.sync();
  } catch (e) {
    await output.close().catch(() => undefined);
    await rm(dst, { force: true });
    throw e;
  } finally {
    await input.close();
  }
  await output.close();
  return 'sparse-copy';
}
