// The one bitmap-directory parser (format/bitmap.ts): QEMU's strict decoding (what opening and
// checking see) and the walk that goes on past damage (strip, repair references, the overview),
// on directories written by `qemu-img bitmap --add` and then damaged at precise bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBitmapDirectory, walkBitmapDirectory } from '../../engine/format/bitmap.js';
import { decodeHeader } from '../../engine/format/header.js';
import type { Qcow2FormatError } from '../../engine/base/errors.js';
import { createQcow2, patchU16, qemuImg, readBytes, run, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir();
afterAll(() => t.cleanup());
const cs = 65536;
const src = join(t.dir, 'bitmaps.qcow2');

function directory(file: string): { offset: number; size: number; nb: number; dir: Uint8Array } {
  const h = decodeHeader(readBytes(file, 0, cs));
  const b = h.bitmaps!;
  return {
    offset: b.directoryOffset,
    size: b.directorySize,
    nb: b.nbBitmaps,
    dir: readBytes(file, b.directoryOffset, b.directorySize),
  };
}

function strict(file: string) {
  const d = directory(file);
  return decodeBitmapDirectory(d.dir, { clusterSize: cs, virtualSize: 64 << 20, nbBitmaps: d.nb });
}

function refusal(f: () => unknown): Qcow2FormatError {
  try {
    f();
  } catch (e) {
    return e as Qcow2FormatError;
  }
  throw new Error('no refusal');
}

/** A copy of the source image to damage. */
function copy(name: string): string {
  const f = join(t.dir, name);
  copyFileSync(src, f);
  return f;
}

beforeAll(() => {
  createQcow2(src, '64M', { cluster_size: cs });
  qemuImg('bitmap', '--add', src, 'first');
  qemuImg('bitmap', '--add', '-g', '512k', src, 'second-with-a-longer-name');
  qemuImg('bitmap', '--add', '--disable', src, 'third');
});

describe('directories written by qemu-img bitmap --add', () => {
  it('decode strictly to what qemu-img info lists, and walk to the same entries', () => {
    const info = JSON.parse(qemuImg('info', '--output=json', src)) as {
      'format-specific': { data: { bitmaps: { name: string; granularity: number; flags: string[] }[] } };
    };
    const want = info['format-specific'].data.bitmaps;
    const got = strict(src);
    expect(got.map((e) => ({ name: e.name, granularity: 2 ** e.granularityBits }))).toEqual(
      want.map((b) => ({ name: b.name, granularity: b.granularity })),
    );
    const d = directory(src);
    const walked = walkBitmapDirectory(d.dir, d.nb);
    expect(walked.problem).toBeUndefined();
    expect(walked.entries).toEqual(got);
  });
});

describe('damaged entries', () => {
  it('a name running past the directory: QEMU refuses the image, the walk keeps the entries and says why', () => {
    const f = copy('long-name.qcow2');
    const d = directory(f);
    const last = strict(src)[2]!;
    patchU16(f, d.offset + last.dirOffset + 18, 1000);
    const e = refusal(() => strict(f));
    expect(e.qemuReason).toBe('Broken bitmap directory');
    expect(e.field).toBe('bitmap_directory[2].name_size');
    expect(run('qemu-img', ['info', f]).stderr).toMatch(/Broken bitmap directory/);
    const w = walkBitmapDirectory(directory(f).dir, d.nb);
    expect(w.entries.map((x) => x.name)).toEqual(['first', 'second-with-a-longer-name', 'third']);
    expect(w.problem).toBe('bitmap directory entry 2 runs past the directory');
  });

  it('an unknown bitmap type: refused with the field; the walk reads the table offsets on', () => {
    const f = copy('extra.qcow2');
    const d = directory(f);
    writeBytes(f, d.offset + 16, Uint8Array.of(7)); // entry 0: type 7
    const e = refusal(() => strict(f));
    expect(e.qemuReason).toBe("Bitmap 'first' doesn't satisfy the constraints");
    expect(e.field).toBe('bitmap_directory[0].type');
    const w = walkBitmapDirectory(directory(f).dir, d.nb);
    expect(w.entries.map((x) => x.tableOffset)).toEqual(strict(src).map((x) => x.tableOffset));
  });

  it('nb_bitmaps smaller or larger than the entries: QEMU counts, the walk stops at nb_bitmaps', () => {
    const dir = directory(src);
    expect(
      refusal(() => decodeBitmapDirectory(dir.dir, { clusterSize: cs, virtualSize: 64 << 20, nbBitmaps: 2 }))
        .qemuReason,
    ).toBe('More bitmaps found than specified in header extension');
    expect(
      refusal(() => decodeBitmapDirectory(dir.dir, { clusterSize: cs, virtualSize: 64 << 20, nbBitmaps: 4 }))
        .qemuReason,
    ).toBe('Less bitmaps found than specified in header extension');
    expect(walkBitmapDirectory(dir.dir, 2).entries).toHaveLength(2);
    expect(walkBitmapDirectory(dir.dir, 4).entries).toHaveLength(3);
  });

  it('a directory cut inside an entry: refused; the walk stops before the entry that does not fit', () => {
    const dir = directory(src);
    const cut = dir.dir.subarray(0, strict(src)[1]!.dirOffset + 10);
    expect(
      refusal(() => decodeBitmapDirectory(cut, { clusterSize: cs, virtualSize: 64 << 20, nbBitmaps: 3 })).qemuReason,
    ).toBe('Broken bitmap directory');
    const w = walkBitmapDirectory(cut, 3);
    expect(w.entries.map((x) => x.name)).toEqual(['first']);
  });
});
