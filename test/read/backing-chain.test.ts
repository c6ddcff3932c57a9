// The one backing-chain follower (image/backing-chain.ts) and the callers that now use it (triage,
// strip --with-backing, salvage's backing, the repair's qemu-img verification): names resolved as
// QEMU resolves them, loops and chains over 16 refused, a FIFO never opened for reading, a link out
// of the root not followed, protocol names (nbd:, http:) never followed.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { admitLayer, confinedTo, openChain } from '../../engine/image/backing-chain.js';
import { MAX_BACKING_CHAIN_DEPTH } from '../../engine/format/constants.js';
import { triageImage } from '../../engine/triage/triage-image.js';
import { stripChain } from '../../engine/strip/strip-chain.js';
import { salvageImage } from '../../engine/salvage/salvage.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';

const t = tempDir();
afterAll(() => t.cleanup());
const p = (...parts: string[]) => join(t.dir, ...parts);

/** An overlay whose header names `backing` (not checked by qemu-img: -u). */
function overlayNaming(file: string, backing: string, format = 'qcow2'): void {
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', format, file, '1M');
}

async function rejection(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

describe('names, depth and loops', () => {
  it('relative names resolve against the overlay, as qemu-img prints them', async () => {
    mkdirSync(p('rel', 'sub'), { recursive: true });
    createQcow2(p('rel', 'base.qcow2'), '1M');
    createQcow2(p('rel', 'sub', 'mid.qcow2'), '1M', {}, { file: '../base.qcow2', format: 'qcow2' });
    createQcow2(p('rel', 'top.qcow2'), '1M', {}, { file: 'sub/mid.qcow2', format: 'qcow2' });
    const chain = await openChain(p('rel', 'top.qcow2'));
    try {
      const info = JSON.parse(qemuImg('info', '--output=json', '--backing-chain', p('rel', 'top.qcow2'))) as {
        filename: string;
      }[];
      expect(chain.layers.map((l) => l.filename)).toEqual(info.map((i) => i.filename));
    } finally {
      await chain.close();
    }
  });

  it('a loop is refused in one line', async () => {
    createQcow2(p('la.qcow2'), '1M');
    createQcow2(p('lb.qcow2'), '1M', {}, { file: 'la.qcow2', format: 'qcow2' });
    qemuImg('rebase', '-u', '-f', 'qcow2', '-b', 'lb.qcow2', '-F', 'qcow2', p('la.qcow2'));
    expect(await rejection(() => openChain(p('lb.qcow2')))).toBe(
      `Backing file '${p('lb.qcow2')}' creates an infinite loop (it is layer 0 of the chain)`,
    );
    // strip --with-backing copies each file of the loop once and says so.
    mkdirSync(p('lout'));
    const s = await stripChain(p('lb.qcow2'), p('lout', 'lb.qcow2'));
    expect(s.layers.map((l) => l.source)).toEqual([p('lb.qcow2'), p('la.qcow2')]);
    expect(s.notes).toEqual([`the backing chain loops back to ${p('lb.qcow2')}; it was copied once`]);
  });

  it(`a chain deeper than ${MAX_BACKING_CHAIN_DEPTH} is refused by the follower, even partially`, async () => {
    mkdirSync(p('deep'));
    createQcow2(p('deep', 'l0.qcow2'), '1M');
    for (let i = 1; i <= MAX_BACKING_CHAIN_DEPTH + 1; i++) overlayNaming(p('deep', `l${i}.qcow2`), `l${i - 1}.qcow2`);
    const top = p('deep', `l${MAX_BACKING_CHAIN_DEPTH + 1}.qcow2`);
    const msg = `Backing chain too deep: '${p('deep', 'l1.qcow2')}' would be layer 17, at most 16 are accepted`;
    expect(await rejection(() => openChain(top))).toBe(msg);
    expect(await rejection(() => openChain(top, { partial: true }))).toBe(msg);
    expect(await rejection(() => admitLayer('x.qcow2', MAX_BACKING_CHAIN_DEPTH))).toMatch(/^Backing chain too deep/);
  });
});

describe('a FIFO as backing file', () => {
  const fifo = p('fifo-base.qcow2');
  const top = p('fifo-top.qcow2');

  it('is refused on its descriptor, never read (the call returns instead of blocking)', async () => {
    run('mkfifo', [fifo]);
    overlayNaming(top, 'fifo-base.qcow2');
    expect(await rejection(() => openChain(top))).toBe(
      `Could not open backing file: Could not open '${fifo}': not a regular file`,
    );
    const chain = await openChain(top, { partial: true });
    expect(chain.layers).toHaveLength(1);
    expect(chain.stoppedAt).toMatchObject({ depth: 1, filename: fifo, kind: 'unopenable' });
    await chain.close();
  });

  it('triage calls the image unreadable with that reason', async () => {
    const row = await triageImage(top);
    expect(row.verdict).toBe('unreadable');
    expect(row.backingChain).toEqual(['fifo-base.qcow2']);
    expect(row.error).toBe(
      `Could not open '${top}': Could not open backing file: Could not open '${fifo}': not a regular file`,
    );
  });

  it('strip --with-backing copies the overlay and says the FIFO was not copied', async () => {
    mkdirSync(p('fout'));
    const s = await stripChain(top, p('fout', 'fifo-top.qcow2'));
    expect(s.layers.map((l) => l.source)).toEqual([top]);
    expect(s.notes).toEqual([`${fifo} is not a regular file; that layer was not copied`]);
  });

  it('salvage treats it as a missing backing file, with a warning', async () => {
    const r = await salvageImage(top, p('fifo.raw'));
    expect(r.warnings).toContain('backing file fifo-base.qcow2 is not a regular file: treated as missing');
  });
});

describe('confinement to a root', () => {
  it('a symbolic link out of the root is not followed by a confined chain, nor by triage', async () => {
    mkdirSync(p('root'));
    mkdirSync(p('outside'));
    createQcow2(p('outside', 'secret.qcow2'), '1M');
    symlinkSync(p('outside', 'secret.qcow2'), p('root', 'link.qcow2'));
    const top = p('root', 'top.qcow2');
    createQcow2(top, '1M', {}, { file: 'link.qcow2', format: 'qcow2' });
    const mayRead = confinedTo(p('root'));
    expect(await mayRead(top)).toBe(true);
    expect(await mayRead(p('root', 'link.qcow2'))).toBe(false);
    expect(await mayRead(p('root', '..', 'outside', 'secret.qcow2'))).toBe(false);
    expect(await mayRead(p('root', 'missing.qcow2'))).toBe(false);
    // Unconfined, the chain follows the link (as QEMU does).
    const free = await openChain(top);
    expect(free.layers).toHaveLength(2);
    await free.close();
    expect(await rejection(() => openChain(top, { mayRead }))).toBe(
      `Could not open backing file: Could not open '${p('root', 'link.qcow2')}': outside the folders this tool may read`,
    );
    const partial = await openChain(top, { mayRead, partial: true });
    expect(partial.layers).toHaveLength(1);
    expect(partial.stoppedAt?.kind).toBe('not-allowed');
    await partial.close();
    const row = await triageImage(top, undefined, mayRead);
    expect(row.verdict).toBe('unreadable');
    expect(row.error).toMatch(/outside the folders this tool may read$/);
    // A confined strip copies only the overlay.
    mkdirSync(p('root', 'out'));
    const s = await stripChain(top, p('root', 'out', 'top.qcow2'), { mayRead });
    expect(s.layers).toHaveLength(1);
    expect(s.notes[0]).toMatch(/outside the folders this tool may read; that layer was not copied$/);
  });
});

describe('protocol names', () => {
  for (const name of ['nbd://127.0.0.1:1/x', 'http://127.0.0.1:1/disk.img', 'nbd:127.0.0.1:1']) {
    it(`${name} is never followed`, async () => {
      const top = p(`proto-${name.replace(/\W/g, '_')}.qcow2`);
      overlayNaming(top, name, 'raw');
      const proto = name.slice(0, name.indexOf(':'));
      expect(await rejection(() => openChain(top))).toBe(
        `Could not open '${name}': only local files are supported (protocol '${proto}')`,
      );
      const chain = await openChain(top, { partial: true });
      expect(chain.stoppedAt?.kind).toBe('protocol');
      await chain.close();
      // Triage checks the image itself (the check never reads backing data) and lists the name.
      const row = await triageImage(top);
      expect(row.backingChain).toEqual([name]);
      expect(row.verdict).toBe('clean');
      const s = await stripChain(top, p(`${proto}-${Math.random().toString(36).slice(2)}.qcow2`));
      expect(s.layers).toHaveLength(1);
      expect(s.notes[0]).toMatch(/only local files are supported/);
    });
  }
});
