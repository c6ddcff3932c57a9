// Hostile files under a served root: links planted at the names outputs will take, and a folder
// swapped for a link while an image under it is opened, must never make the engine write, replace
// or read a file outside the root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createQcow2, qemuIo, tempDir } from '../helpers/qemu.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { Service } from '../../engine/service/service.js';
import { stripFile } from '../../engine/strip/strip.js';
import { salvageImage } from '../../engine/salvage/salvage.js';
import { copyImage } from '../../engine/repair/copy-image.js';
import { createOutputFile, writeOutputFile } from '../../engine/io/output-file.js';
import { openInputFile } from '../../engine/io/input-file.js';

const root = tempDir('q2d-conf-root-');
const outside = tempDir('q2d-conf-out-');
let service: Service;

beforeAll(async () => {
  createQcow2(join(root.dir, 'disk.qcow2'), '4M');
  qemuIo(join(root.dir, 'disk.qcow2'), ['write -P 0x11 0 256k']);
  service = new Service(await createServeHost(root.dir));
});

afterAll(async () => {
  await service.dispose();
  root.cleanup();
  outside.cleanup();
});

const open = async (path: string) =>
  (await service.call('image.open', { ref: { kind: 'root', path } })) as { handle: string };

describe('outputs cannot escape the root', () => {
  it('a dangling symlink at disk.stripped.qcow2 does not make strip create a file outside the root', async () => {
    const target = join(outside.dir, 'planted-by-strip.qcow2');
    symlinkSync(target, join(root.dir, 'disk.stripped.qcow2'));
    // The engine call: the name is taken by the link; refused, nothing created anywhere.
    await expect(stripFile(join(root.dir, 'disk.qcow2'), join(root.dir, 'disk.stripped.qcow2'))).rejects.toThrow(
      /already exists/,
    );
    expect(existsSync(target)).toBe(false);
    // The service picks the next free name instead, and writes inside the root.
    const { handle } = await open('disk.qcow2');
    const r = (await service.call('image.strip', { handle, what: [], save: { kind: 'sibling' } })) as { name: string };
    expect(r.name).toBe('disk-2.stripped.qcow2');
    expect(lstatSync(join(root.dir, 'disk-2.stripped.qcow2')).isFile()).toBe(true);
    expect(existsSync(target)).toBe(false);
    expect(lstatSync(join(root.dir, 'disk.stripped.qcow2')).isSymbolicLink()).toBe(true);
    // Even with --force, the link's name is replaced, never the file it points to.
    await stripFile(join(root.dir, 'disk.qcow2'), join(root.dir, 'disk.stripped.qcow2'), { force: true });
    expect(lstatSync(join(root.dir, 'disk.stripped.qcow2')).isFile()).toBe(true);
    expect(existsSync(target)).toBe(false);
  });

  it('a link at disk.salvaged.qcow2.partial does not make salvage overwrite a file outside the root', async () => {
    const victim = join(outside.dir, 'victim.bin');
    writeFileSync(victim, 'precious data');
    symlinkSync(victim, join(root.dir, 'disk.salvaged.qcow2.partial'));
    await salvageImage(join(root.dir, 'disk.qcow2'), join(root.dir, 'disk.salvaged.qcow2'), {
      format: 'qcow2',
      outputRoot: root.dir,
    });
    expect(readFileSync(victim, 'utf8')).toBe('precious data');
    expect(lstatSync(join(root.dir, 'disk.salvaged.qcow2.partial')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(root.dir, 'disk.salvaged.qcow2')).isFile()).toBe(true);
  });

  it('a plain .partial file inside the root is not destroyed by salvage', async () => {
    const partial = join(root.dir, 'disk.salvaged.raw.partial');
    writeFileSync(partial, 'somebody else made this');
    await salvageImage(join(root.dir, 'disk.qcow2'), join(root.dir, 'disk.salvaged.raw'), { format: 'raw' });
    expect(readFileSync(partial, 'utf8')).toBe('somebody else made this');
    expect(readFileSync(join(root.dir, 'disk.salvaged.raw')).subarray(0, 4)).toEqual(
      Buffer.from([0x11, 0x11, 0x11, 0x11]),
    );
    // No temporary file is left behind.
    expect(readdirSync(root.dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('a repaired copy, a report and a journal are never written through a planted link', async () => {
    const victim = join(outside.dir, 'copy-victim.bin');
    writeFileSync(victim, 'keep');
    symlinkSync(victim, join(root.dir, 'disk.repaired.qcow2'));
    await expect(copyImage(join(root.dir, 'disk.qcow2'), join(root.dir, 'disk.repaired.qcow2'))).rejects.toThrow(
      /refusing to overwrite/,
    );
    symlinkSync(join(outside.dir, 'report-victim.html'), join(root.dir, 'disk.report.html'));
    await expect(writeOutputFile(join(root.dir, 'disk.report.html'), '<p>x</p>')).rejects.toThrow(/already exists/);
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    expect(existsSync(join(outside.dir, 'report-victim.html'))).toBe(false);
  });

  it('an output whose folder is a link leading out of the root is refused', async () => {
    symlinkSync(outside.dir, join(root.dir, 'out-link'));
    await expect(createOutputFile(join(root.dir, 'out-link', 'x.qcow2'), { root: root.dir })).rejects.toThrow(
      /outside the folder it must stay in/,
    );
    expect(existsSync(join(outside.dir, 'x.qcow2'))).toBe(false);
    expect(readdirSync(outside.dir).filter((n) => n.includes('x.qcow2'))).toEqual([]);
  });

  it('an input that is not a regular file is refused before it is read', async () => {
    await expect(openInputFile(root.dir)).rejects.toThrow(/not a regular file/);
    const fifo = join(root.dir, 'pipe.qcow2');
    const mk = spawn('mkfifo', [fifo]);
    await new Promise((r) => mk.once('exit', r));
    await expect(openInputFile(fifo)).rejects.toThrow(/not a regular file/);
  });
});

describe('inputs cannot escape the root by a race', () => {
  it('swapping a folder with a symlink while an image under it is opened never reads a file outside the root', async () => {
    // Inside: dir/img.qcow2 of 4 MiB. Outside: img.qcow2 of 8 MiB. A link `swap` leads outside.
    mkdirSync(join(root.dir, 'dir'));
    createQcow2(join(root.dir, 'dir', 'img.qcow2'), '4M');
    const outDir = join(outside.dir, 'elsewhere');
    mkdirSync(outDir);
    createQcow2(join(outDir, 'img.qcow2'), '8M');
    symlinkSync(outDir, join(root.dir, 'swap'));
    // renameat2(RENAME_EXCHANGE) in a tight loop in another process, bounded in time.
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
    let inside = 0;
    let refused = 0;
    let escapes = 0;
    try {
      for (let i = 0; i < 2000; i++) {
        try {
          const r = (await service.call('image.open', { ref: { kind: 'root', path: 'dir/img.qcow2' } })) as {
            handle: string;
            overview: { virtualSize: number };
          };
          if (r.overview.virtualSize === 8 << 20) escapes++;
          else inside++;
          await service.call('image.close', { handle: r.handle });
        } catch {
          refused++;
        }
      }
    } finally {
      swapper.kill();
    }
    expect(escapes).toBe(0);
    expect(inside + refused).toBe(2000);
    expect(inside).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0); // the race was really run: some opens met the link
  }, 120_000);
});
