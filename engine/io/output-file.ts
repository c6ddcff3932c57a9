/**
 * The one way to create an output file. It is created under a random temporary name in the target
 * folder with O_CREAT|O_EXCL|O_NOFOLLOW (never through a link, never over an existing file), the
 * folder is held open and its real path checked against `root`, and `commit` gives the file its
 * name with link+unlink, which never replaces anything (or rename when replacing was asked for,
 * which replaces the name itself, never the file a link points to). A crash leaves at worst a
 * hidden `.NAME.XXXX.tmp` beside the output, never a half-written file under the output's name.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, link, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConfinementError, isInside, realPathOfFd, realRoot } from './confine.js';
import { FileIO } from './file-io.js';

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_RDWR, O_RDONLY, O_DIRECTORY } = constants;

export interface OutputOptions {
  /** The folder the output must stay in (serve: --root); checked on the open folder descriptor. */
  root?: string | undefined;
  /** Replace an existing file of that name (its name, never a link's target). */
  replace?: boolean | undefined;
}

/** The output name is taken: said with the name, not the server's path. */
export class OutputExistsError extends Error {
  readonly code = 'EEXIST';
  constructor(readonly path: string) {
    super(`refusing to overwrite ${basename(path)}: it already exists`);
  }
}

export class OutputFile {
  private done = false;
  constructor(
    /** The name the file gets on commit (as the caller gave it). */
    readonly path: string,
    /** Read/write access to the temporary file. */
    readonly io: FileIO,
    private readonly dir: FileHandle,
    private readonly dirRef: string,
    private readonly tmpName: string,
    private readonly replace: boolean,
  ) {}

  /** The temporary file's path through the held folder (for a copy made by path, e.g. a reflink). */
  get tempPath(): string {
    return join(this.dirRef, this.tmpName);
  }

  /** Make the content durable and give it its name; refuses (and removes the temporary) if the name is taken. */
  async commit(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const tmp = join(this.dirRef, this.tmpName);
    const final = join(this.dirRef, basename(this.path));
    try {
      await this.io.flush();
      await this.io.close();
      if (this.replace) await rename(tmp, final);
      else {
        await link(tmp, final).catch((e: NodeJS.ErrnoException) => {
          throw e.code === 'EEXIST' ? new OutputExistsError(this.path) : e;
        });
        await unlink(tmp);
      }
      await this.dir.sync().catch(() => undefined);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    } finally {
      await this.dir.close().catch(() => undefined);
    }
  }

  /** Give up: the temporary file is removed, nothing gets the output's name. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.io.close().catch(() => undefined);
    await unlink(join(this.dirRef, this.tmpName)).catch(() => undefined);
    await this.dir.close().catch(() => undefined);
  }
}

/** Hold the folder of `path` open and check where it really is; returns the prefix to reach it. */
async function openFolder(path: string, root: string | undefined): Promise<{ dir: FileHandle; ref: string }> {
  const folder = dirname(resolve(path));
  const dir = await open(folder, O_RDONLY | O_DIRECTORY);
  try {
    const real = await realPathOfFd(dir.fd);
    if (root !== undefined) {
      const r = await realRoot(root);
      if (real === undefined || !isInside(real, r)) throw new ConfinementError(`the folder of ${basename(path)}`);
    }
    return { dir, ref: real === undefined ? folder : `/proc/self/fd/${dir.fd}` };
  } catch (e) {
    await dir.close();
    throw e;
  }
}

/** Create the output `path` (see the file comment); write through `.io`, then `commit()` or `discard()`. */
export async function createOutputFile(path: string, opts: OutputOptions = {}): Promise<OutputFile> {
  const { dir, ref } = await openFolder(path, opts.root);
  const name = basename(path);
  try {
    if (!opts.replace && (await lstat(join(ref, name)).catch(() => undefined))) throw new OutputExistsError(path);
    const tmpName = `.${name}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(join(ref, tmpName), O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR, 0o644);
    const io = FileIO.fromHandle(path, fh, { write: true });
    return new OutputFile(path, io, dir, ref, tmpName, !!opts.replace);
  } catch (e) {
    await dir.close();
    throw e;
  }
}

/** Write `bytes` as the new file `path` in one go (reports, small files). */
export async function writeOutputFile(
  path: string,
  bytes: Uint8Array | string,
  opts: OutputOptions = {},
): Promise<void> {
  const out = await createOutputFile(path, opts);
  try {
    await out.io.write(0, typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  } catch (e) {
    await out.discard();
    throw e;
  }
  await out.commit();
}
