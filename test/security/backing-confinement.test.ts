// The backing-chain follower under a root: a backing file is checked by name before it is opened and
// by descriptor after, so a folder swapped for a symbolic link in between never makes a chain read
// a file outside the root.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, tempDir } from '../helpers/qemu.js';
import { confinedTo, openChain } from '../../engine/image/backing-chain.js';
import { UnreadableError } from '../../engine/base/errors.js';
import { FileIO } from '../../engine/io/file-io.js';
import { descriptorAllowed } from '../../engine/io/confine.js';

const root = tempDir('q2d-chain-root-');
const outside = tempDir('q2d-chain-out-');
afterAll(() => {
  root.cleanup();
  outside.cleanup();
});

const OPENS = 2000;

describe('backing chains cannot escape the root by a race', () => {
  it('the descriptor check refuses a backing file that is outside the root whatever name opened it', async () => {
    const out = join(outside.dir, 'plain.qcow2');
    createQcow2(out, '1M');
    const io = await FileIO.open(out);
    try {
      const may = confinedTo(root.dir);
      expect(await descriptorAllowed(io.fd, may)).toBe(false);
      expect(await descriptorAllowed(io.fd, confinedTo(outside.dir))).toBe(true);
    } finally {
      await io.close();
    }
  });

  it('swapping the backing folder with a symlink while the chain is opened: 0 escapes out of N opens', async () => {
    // Inside: top.qcow2 backed by dir/base.qcow2 (4 MiB). Outside: base.qcow2 of 8 MiB, reached by
    // the link `swap` that is exchanged with `dir` in a tight loop.
    mkdirSync(join(root.dir, 'dir'));
    createQcow2(join(root.dir, 'dir', 'base.qcow2'), '4M');
    createQcow2(join(root.dir, 'top.qcow2'), '4M', {}, { file: 'dir/base.qcow2', format: 'qcow2' });
    const outDir = join(outside.dir, 'elsewhere');
    mkdirSync(outDir);
    createQcow2(join(outDir, 'base.qcow2'), '8M');
    symlinkSync(outDir, join(root.dir, 'swap'));
    const swapper = spawn('python3', [
      '-c',
      `import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(${JSON.stringify(join(root.dir, 'dir'))}), os.fsencode(${JSON.stringify(join(root.dir, 'swap'))})
end = time.time() + 60
n = 0
while time.time() < end:
    if libc.renameat2(-100, a, -100, b, 2) != 0: raise SystemExit('renameat2 failed: %d' % ctypes.get_errno())
    n += 1
    if n == 2000: print('swapping', flush=True)
`,
    ]);
    await new Promise<void>((ok, fail) => {
      swapper.stdout.once('data', () => ok());
      swapper.once('exit', (c) => fail(new Error(`swapper exited ${c}`)));
    });
    const mayRead = confinedTo(root.dir);
    const tally = { inside: 0, escapes: 0, refusedByName: 0, refusedByDescriptor: 0, otherErrors: 0 };
    try {
      for (let i = 0; i < OPENS; i++) {
        try {
          const chain = await openChain(join(root.dir, 'top.qcow2'), { mayRead });
          if (chain.layers[1]?.virtualSize === 8 << 20) tally.escapes++;
          else tally.inside++;
          await chain.close();
        } catch (e) {
          const m = (e as Error).message;
          if (!(e instanceof UnreadableError)) throw e;
          if (m.includes('a folder was swapped')) tally.refusedByDescriptor++;
          else if (m.includes('outside the folders')) tally.refusedByName++;
          else tally.otherErrors++; // the path did not exist at the instant of the look-up
        }
      }
    } finally {
      swapper.kill();
    }
    console.log(`backing race, ${OPENS} opens: ${JSON.stringify(tally)}`);
    expect(tally.escapes).toBe(0);
    expect(tally.inside).toBeGreaterThan(0);
    // The race was really run: some opens met the link.
    expect(tally.refusedByName + tally.refusedByDescriptor).toBeGreaterThan(0);
    // Some opens passed the check of the name and then opened the file outside: only the check of
    // the descriptor stood between them and an escape.
    expect(tally.refusedByDescriptor).toBeGreaterThan(0);
  }, 120_000);
});
