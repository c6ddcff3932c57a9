// Inspecting never writes: opening, info, reading the whole guest disk (and each snapshot), map
// and check leave every byte of the image, its backing files and its data file unchanged — also on
// images QEMU itself would modify when opening them read-write (dirty bit, unknown autoclear bits,
// stale bitmaps).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { openChain } from '../../engine/image/backing-chain.js';
import { GuestReader } from '../../engine/image/guest-reader.js';
import { mapEntries } from '../../engine/image/map.js';
import { collectImageInfo } from '../../engine/image/info-file.js';
import { renderInfoHuman, renderInfoJson } from '../../engine/report/info-render.js';
import { checkFile } from '../../engine/check/index.js';
import { UnreadableError } from '../../engine/base/errors.js';
import { createQcow2, patchU64, qemuImg, qemuIo, run, sha256, tempDir } from '../helpers/qemu.js';
import { createLuks } from './helpers.js';

const t = tempDir('q2d-ro-');
afterAll(t.cleanup);
const f = (n: string): string => join(t.dir, n);

interface Kind {
  /** The image to inspect, then every other file it depends on. */
  files: string[];
  make: () => void;
  /** Guest data is not readable (encrypted). */
  unreadable?: boolean;
}

const KINDS: Record<string, Kind> = {
  v2: {
    files: [f('v2.qcow2')],
    make: () => {
      createQcow2(f('v2.qcow2'), '8M', { compat: '0.10' });
      qemuIo(f('v2.qcow2'), ['write -P 1 0 256k']);
      qemuImg('snapshot', '-c', 's', f('v2.qcow2'));
    },
  },
  'v3 snapshots + compressed + zero': {
    files: [f('v3.qcow2')],
    make: () => {
      createQcow2(f('v3.qcow2'), '8M', { cluster_size: '4k' });
      qemuIo(f('v3.qcow2'), ['write -P 1 0 64k', 'write -c -P 2 64k 64k', 'write -z 128k 64k']);
      qemuImg('snapshot', '-c', 'a', f('v3.qcow2'));
      qemuIo(f('v3.qcow2'), ['write -P 3 0 16k']);
    },
  },
  'extended L2 + zstd': {
    files: [f('extl2.qcow2')],
    make: () => {
      createQcow2(f('extl2.qcow2'), '8M', { extended_l2: true, compression_type: 'zstd' });
      qemuIo(f('extl2.qcow2'), ['write -P 4 4k 4k', 'write -c -P 5 1M 64k']);
    },
  },
  'dirty (lazy refcounts) + unknown autoclear bit + bitmaps': {
    files: [f('dirty.qcow2')],
    make: () => {
      const p = f('dirty.qcow2');
      createQcow2(p, '8M', { lazy_refcounts: true });
      qemuImg('bitmap', '--add', p, 'b0');
      qemuIo(p, ['write -P 6 0 128k']);
      patchU64(p, 72, 0x1n); // dirty: QEMU repairs refcounts when it opens this read-write
      patchU64(p, 88, 0x81n); // bitmaps + an unknown autoclear bit QEMU would clear
    },
  },
  'stale bitmaps extension': {
    files: [f('stale.qcow2')],
    make: () => {
      const p = f('stale.qcow2');
      createQcow2(p, '8M');
      qemuImg('bitmap', '--add', p, 'b0');
      qemuIo(p, ['write -P 11 0 64k']);
      patchU64(p, 88, 0n); // QEMU drops the extension on its next header update
    },
  },
  'backing chain with a raw base': {
    files: [f('top.qcow2'), f('mid.qcow2'), f('base.raw')],
    make: () => {
      qemuImg('create', '-q', '-f', 'raw', f('base.raw'), '8M');
      qemuIo(f('base.raw'), ['write -P 7 0 1M'], { format: 'raw' });
      createQcow2(f('mid.qcow2'), '8M', {}, { file: 'base.raw', format: 'raw' });
      qemuIo(f('mid.qcow2'), ['write -P 8 512k 512k']);
      createQcow2(f('top.qcow2'), '8M', {}, { file: 'mid.qcow2', format: 'qcow2' });
      qemuIo(f('top.qcow2'), ['write -P 9 768k 64k']);
    },
  },
  'external data file': {
    files: [f('df.qcow2'), f('df.raw')],
    make: () => {
      createQcow2(f('df.qcow2'), '8M', { data_file: f('df.raw') });
      qemuIo(f('df.qcow2'), ['write -P 10 0 1M']);
    },
  },
  luks: { files: [f('luks.qcow2')], unreadable: true, make: () => createLuks(f('luks.qcow2'), '8M') },
};

beforeAll(() => {
  for (const k of Object.values(KINDS)) k.make();
});

const fingerprint = (files: string[]): string[] =>
  files.map((p) => `${sha256(p)} ${statSync(p).size} ${statSync(p).mtimeMs}`);

describe('inspecting never changes a byte', () => {
  for (const [name, kind] of Object.entries(KINDS)) {
    it(name, async () => {
      const before = fingerprint(kind.files);
      const top = kind.files[0]!;

      const infos = await collectImageInfo(top, { backingChain: true });
      expect(infos.length).toBe(kind.files.filter((p) => !p.endsWith('df.raw')).length);
      renderInfoJson(infos);
      renderInfoHuman(infos);

      const chain = await openChain(top);
      try {
        if (kind.unreadable) {
          await expect(GuestReader.open(chain)).rejects.toThrow(UnreadableError);
        } else {
          const reader = await GuestReader.open(chain);
          let nonZero = 0;
          for (let off = 0; off < reader.size; off += 1 << 20) {
            const buf = await reader.read(off, Math.min(1 << 20, reader.size - off));
            nonZero += buf.some((b) => b !== 0) ? 1 : 0;
          }
          expect(nonZero).toBeGreaterThan(0); // the data written above was read
          const img = chain.top.image!;
          if (img.header.nbSnapshots > 0) {
            for (const sn of (await img.readSnapshots()).entries) {
              const r = await GuestReader.open(chain, { snapshot: sn.id });
              await r.read(0, r.size);
            }
          }
          await mapEntries(chain);
        }
      } finally {
        await chain.close();
      }

      await checkFile(top);
      const cli = run('node', ['bin/qcow2-doctor.cjs', 'info', '--backing-chain', top]);
      expect(cli.status, cli.stderr).toBe(0);

      expect(fingerprint(kind.files)).toEqual(before);
    });
  }
});
