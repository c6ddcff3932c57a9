// The read path judged by QEMU: for every image of the matrix, `export` is byte-identical to
// `qemu-img convert -O raw` (per snapshot too, against `convert -l`), `map` JSON equals
// `qemu-img map --output=json` byte for byte, and reading leaves every file unchanged.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openChain } from '../../engine/image/backing-chain.js';
import { exportRaw } from '../../engine/image/export.js';
import { formatHuman, formatJson, mapEntries } from '../../engine/image/map.js';
import { FileIO } from '../../engine/io/file-io.js';
import { qemuCheck, qemuImg, run, sha256, tempDir } from '../helpers/qemu.js';
import { MATRIX } from './images.js';

async function ourExport(top: string, out: string, snapshot?: string): Promise<void> {
  const chain = await openChain(top);
  const io = await FileIO.open(out, { create: true });
  try {
    await exportRaw(chain, io, snapshot === undefined ? {} : { snapshot });
  } finally {
    await io.close();
    await chain.close();
  }
}

async function ourMap(top: string, format: 'json' | 'human'): Promise<string> {
  const chain = await openChain(top);
  try {
    const entries = await mapEntries(chain, format);
    if (format === 'json') return formatJson(entries);
    const h = formatHuman(entries);
    return h.text + (h.error ? `ERROR ${h.error}` : '');
  } finally {
    await chain.close();
  }
}

function qemuHumanMap(top: string): string {
  const r = run('qemu-img', ['map', top]);
  const err = r.stderr.match(/^qemu-img: (.*)$/m);
  return r.stdout + (r.status !== 0 ? `ERROR ${err?.[1] ?? r.stderr}` : '');
}

describe('read path conformance with qemu-img 7.2', () => {
  for (const c of MATRIX) {
    it(c.name, async () => {
      const t = tempDir('q2d-read-');
      try {
        const img = c.build(t.dir);
        const before = img.files.map(sha256);
        if (img.compressed) expect(qemuCheck(img.top).json?.['compressed-clusters']).toBeGreaterThan(0);

        const ours = join(t.dir, 'ours.raw');
        const theirs = join(t.dir, 'theirs.raw');
        await ourExport(img.top, ours);
        qemuImg('convert', '-f', img.format ?? 'qcow2', '-O', 'raw', img.top, theirs);
        const a = readFileSync(ours);
        const b = readFileSync(theirs);
        expect(a.length).toBe(b.length);
        expect(a.equals(b), 'export differs from qemu-img convert -O raw').toBe(true);

        expect(await ourMap(img.top, 'json')).toBe(qemuImg('map', '--output=json', img.top));
        expect(await ourMap(img.top, 'human')).toBe(qemuHumanMap(img.top));

        for (const sn of img.snapshots) {
          for (const [key, value] of [
            ['name', sn.name],
            ['id', sn.id],
          ] as const) {
            const o = join(t.dir, `ours-${key}-${value}.raw`);
            const q = join(t.dir, `theirs-${key}-${value}.raw`);
            await ourExport(img.top, o, value);
            qemuImg('convert', '-f', 'qcow2', '-l', `snapshot.${key}=${value}`, '-O', 'raw', img.top, q);
            expect(readFileSync(o).equals(readFileSync(q)), `snapshot ${key}=${value}`).toBe(true);
          }
        }
        expect(img.files.map(sha256)).toEqual(before);
      } finally {
        t.cleanup();
      }
    });
  }
});
