/**
 * Confinement to a served root: FileRefs of kind 'root' are paths relative to the root; they are
 * resolved through realpath (symlinks followed) and refused unless the result stays inside the
 * root's own realpath. Also lists a folder of the root for the file browser.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, sep } from 'node:path';
import type { FileEntry, FileList, FileRef } from '../contract/contract.js';
import { ContractError } from '../contract/errors.js';
import { looksLikeQcow2 } from './overview.js';
import type { RecentStore } from './recent.js';

export const MAX_LIST_ENTRIES = 2000;

const denied = (what: string, value: string): ContractError =>
  new ContractError('access-denied', `${what} is outside the served folder`, { field: 'args.ref.path', value });

export class RootResolver {
  private constructor(readonly root: string) {}

  static async create(root: string): Promise<RootResolver> {
    const real = await realpath(root);
    if (!(await stat(real)).isDirectory()) throw new Error(`--root ${root} is not a directory`);
    return new RootResolver(real);
  }

  /** True when `p` (absolute, already real) is the root or inside it. */
  contains(p: string): boolean {
    return p === this.root || p.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep);
  }

  /** Resolve a root-relative path to a real absolute path inside the root, or throw access-denied / not-found. */
  async resolveRelative(rel: string): Promise<string> {
    if (isAbsolute(rel) || /^[A-Za-z]:/.test(rel) || rel.includes('\0')) throw denied('an absolute path', rel);
    const parts = rel.split(/[\\/]+/).filter((x) => x !== '' && x !== '.');
    if (parts.includes('..')) throw denied('a path with ..', rel);
    let real: string;
    try {
      real = await realpath(join(this.root, ...parts));
    } catch {
      throw new ContractError('not-found', `no such file in the served folder: ${rel}`, {
        field: 'args.ref.path',
        value: rel,
      });
    }
    if (!this.contains(real)) throw denied('this path (through a symbolic link)', rel);
    return real;
  }

  /** The root-relative display path of a real path inside the root. */
  relativeOf(real: string): string {
    return relative(this.root, real).split(sep).join('/');
  }

  async mayRead(p: string): Promise<boolean> {
    try {
      return this.contains(await realpath(p));
    } catch {
      return false;
    }
  }

  async resolve(
    ref: FileRef,
    recent: RecentStore,
    samples: Map<string, string>,
  ): Promise<{ path: string; name: string }> {
    switch (ref.kind) {
      case 'root': {
        const path = await this.resolveRelative(ref.path);
        if (!(await stat(path)).isFile())
          throw new ContractError('invalid-argument', `${ref.path} is not a regular file`, {
            field: 'args.ref.path',
            value: ref.path,
          });
        return { path, name: this.relativeOf(path) };
      }
      case 'recent': {
        const item = recent.find(ref.id);
        if (!item)
          throw new ContractError('not-found', `no recent entry ${ref.id}`, { field: 'args.ref.id', value: ref.id });
        // Re-check: the file may have been replaced by a symlink since.
        const path = await this.resolveRelative(this.relativeOf(item.path));
        return { path, name: item.name };
      }
      case 'sample': {
        const path = samples.get(ref.name);
        if (!path)
          throw new ContractError('not-found', `no bundled sample named ${ref.name}`, {
            field: 'args.ref.name',
            value: ref.name,
          });
        return { path, name: `sample: ${basename(path)}` };
      }
      default:
        throw new ContractError('not-available', `opening by ${ref.kind} is only available in the desktop app`, {
          field: 'args.ref.kind',
          value: ref.kind,
        });
    }
  }

  async list(dir: string | undefined): Promise<FileList> {
    const real = dir ? await this.resolveRelative(dir) : this.root;
    if (!(await stat(real)).isDirectory())
      throw new ContractError('invalid-argument', `${dir} is not a folder`, { field: 'args.dir', value: String(dir) });
    const names = (await readdir(real)).sort().slice(0, MAX_LIST_ENTRIES);
    const entries: FileEntry[] = [];
    for (const name of names) {
      const full = join(real, name);
      try {
        const l = await lstat(full);
        const target = l.isSymbolicLink() ? await realpath(full) : full;
        if (!this.contains(target)) continue; // links leading out of the root are not shown
        const st = l.isSymbolicLink() ? await stat(target) : l;
        if (!st.isFile() && !st.isDirectory()) continue;
        const isFile = st.isFile();
        entries.push({
          name,
          path: this.relativeOf(full),
          kind: isFile ? 'file' : 'dir',
          size: isFile ? st.size : 0,
          qcow2: isFile && (await looksLikeQcow2(target)),
        });
      } catch {
        // Vanished or unreadable entries are skipped.
      }
    }
    return { dir: real === this.root ? '' : this.relativeOf(real), entries };
  }
}
