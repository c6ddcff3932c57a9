// The repair's claims judged against real guest data: known patterns written with qemu-io at known
// guest offsets, the image damaged at precise bytes, repaired by us (the CLI) and, on a copy, by
// `qemu-img check -r all`. We must never lose a guest byte qemu-img keeps, and every "clean" / exit 0
// / "nothing lost" must hold. Each test is named after the bug it pins down.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import {
  createQcow2,
  patchU64,
  qemuCheck,
  qemuImg,
  qemuIo,
  readU64,
  run,
  sha256,
  tempDir,
  writeBytes,
} from '../helpers/qemu.js';

const t = tempDir('q2d-trust-');
afterAll(t.cleanup);
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);
let n = 0;
const dirFor = (name: string): string => {
  const d = join(t.dir, `${name}-${n++}`);
  mkdirSync(d);
  return d;
};

interface Pattern {
  byte: number;
  offset: number;
  length: number;
}

/** Whether the guest reads `p` back exactly (QEMU's reader is the judge). */
function readsBack(file: string, p: Pattern): boolean {
  const r = run('qemu-io', [
    '-f',
    'qcow2',
    '-r',
    '-c',
    `read -P 0x${p.byte.toString(16)} ${p.offset} ${p.length}`,
    file,
  ]);
  return (
    r.status === 0 && !/fail|error/i.test(r.stdout + r.stderr) && r.stdout.includes(`read ${p.length}/${p.length}`)
  );
}

function image(dir: string, clusterSize: number, size: string, patterns: Pattern[]): string {
  const f = join(dir, 'disk.qcow2');
  createQcow2(f, size, { cluster_size: clusterSize });
  qemuIo(
    f,
    patterns.map((p) => `write -P 0x${p.byte.toString(16)} ${p.offset} ${p.length}`),
  );
  return f;
}

const l1Offset = (f: string): number => Number(readU64(f, 40));
const l1Size = (f: string): number => readBytesU32(f, 36);
function readBytesU32(f: string, off: number): number {
  return Number(readU64(f, off - 4) & 0xffffffffn);
}
const entryOffset = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

/** qemu-img check -r all on a copy; returns the copy. */
function qemuRepairedCopy(f: string): string {
  const q = `${f}.qemu`;
  copyFileSync(f, q);
  qemuCheck(q, 'all');
  return q;
}

function repairJson(f: string, ...extra: string[]) {
  const r = cli('check', '-r', 'all', '--output=json', ...extra, f);
  const json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  return { ...r, json };
}

describe('evidence before trust', () => {
  for (const cs of [65536, 4096]) {
    it(`refcount-table entry redirected onto the active L2 table keeps every guest byte (${cs / 1024} KiB clusters)`, () => {
      const patterns = [
        { byte: 0x11, offset: 0, length: 128 * 1024 },
        { byte: 0x22, offset: 1 << 20, length: 64 * 1024 },
        { byte: 0x33, offset: 40 << 20, length: 64 * 1024 },
      ];
      const f = image(dirFor('reftable-onto-l2'), cs, '64M', patterns);
      const l2 = entryOffset(readU64(f, l1Offset(f)));
      const reftable = Number(readU64(f, 48));
      patchU64(f, reftable, l2); // the refcount table now names the active L2 table as refblock 0
      const q = qemuRepairedCopy(f);
      const ours = repairJson(f, '--no-journal');
      expect(ours.status, ours.stderr).toBe(0);
      expect(ours.stderr).not.toMatch(/never mapped real data|cleared/);
      expect(ours.stderr).toMatch(/refcount table is the wrong claimant/);
      expect(ours.json?.['guest-ranges-lost']).toEqual([]);
      for (const p of patterns) {
        expect(readsBack(f, p), `pattern 0x${p.byte.toString(16)}`).toBe(true);
        if (readsBack(q, p)) expect(readsBack(f, p)).toBe(true); // never lose what qemu-img keeps
      }
      expect(qemuCheck(f).status).toBe(0);
    });
  }
});

describe('lost L2 tables are not leaks', () => {
  const zeroL1 = (f: string): void => writeBytes(f, l1Offset(f), new Uint8Array(l1Size(f) * 8));

  it('zeroed active L1: -r leaks keeps the lost L2 table and the data it maps, says so, exits non-zero', () => {
    const patterns = [{ byte: 0x11, offset: 0, length: 128 * 1024 }];
    const f = image(dirFor('l1-zeroed-leaks'), 65536, '64M', patterns);
    const original = readU64(f, l1Offset(f));
    zeroL1(f);
    const r = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/kept 1 lost L2 table\(s\) \(0x40000 \(2 data clusters\)\) and the 2 data cluster\(s\)/);
    // Nothing was freed: with the L1 entry put back, every byte reads and the image is clean.
    patchU64(f, l1Offset(f), original);
    for (const p of patterns) expect(readsBack(f, p)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('zeroed active L1: -r all re-links the lost L2 table into the only free slot (qemu-img frees it)', () => {
    const patterns = [
      { byte: 0x11, offset: 0, length: 128 * 1024 },
      { byte: 0x22, offset: 1 << 20, length: 64 * 1024 },
    ];
    const f = image(dirFor('l1-zeroed-all'), 65536, '64M', patterns);
    zeroL1(f);
    const q = qemuRepairedCopy(f);
    expect(readsBack(q, patterns[0]!)).toBe(false); // qemu-img's repair loses it all
    const ours = repairJson(f, '--no-journal');
    expect(ours.status, ours.stderr).toBe(0);
    expect(ours.stderr).toMatch(/re-linked there because it is the only lost table/);
    expect(ours.json?.['guest-ranges-lost']).toEqual([]);
    for (const p of patterns) expect(readsBack(f, p)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('zeroed active L1 with several lost tables: -r all refuses, names the candidates, recommends salvage, frees nothing', () => {
    const patterns = [
      { byte: 0x11, offset: 0, length: 3 << 20 },
      { byte: 0x22, offset: 37 << 20, length: 5 << 20 },
      { byte: 0x33, offset: 60 << 20, length: 64 * 1024 },
    ];
    const f = image(dirFor('l1-zeroed-many'), 4096, '64M', patterns);
    const l1 = l1Offset(f);
    const saved = Array.from({ length: l1Size(f) }, (_, i) => readU64(f, l1 + i * 8));
    zeroL1(f);
    const ours = cli('check', '-r', 'all', '--no-journal', f);
    expect(ours.status).not.toBe(0);
    expect(ours.stderr).toMatch(
      /not repaired: \d+ L2 table\(s\) still mapping guest data are linked from no L1 entry \(candidates: 0x/,
    );
    expect(ours.stderr).toMatch(/qcow2-doctor salvage/);
    // Nothing freed or lowered: with the L1 table put back the image is whole and clean.
    saved.forEach((v, i) => patchU64(f, l1 + i * 8, v));
    for (const p of patterns) expect(readsBack(f, p)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('zeroed active L1 with a surviving snapshot: each lost table goes back to the slot the snapshot L1 holds it at', () => {
    const patterns = [
      { byte: 0x11, offset: 0, length: 64 * 1024 },
      { byte: 0x22, offset: 10 << 20, length: 64 * 1024 },
    ];
    const f = image(dirFor('l1-zeroed-snapshot'), 4096, '64M', patterns);
    qemuImg('snapshot', '-c', 'snap1', f);
    zeroL1(f);
    const ours = repairJson(f, '--no-journal');
    expect(ours.status, ours.stderr).toBe(0);
    expect(ours.stderr).toMatch(/a surviving snapshot L1 table holds the same table at slot 5/);
    for (const p of patterns) expect(readsBack(f, p)).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });
});

describe('every refusal has a way forward', () => {
  const scenario = (name: string): string => SCENARIOS.find((s) => s.name === name)!.build(dirFor(name));

  it('an L2 entry whose data offset is unaligned is dropped, named with its way back, and listed as lost', () => {
    const f = scenario('data-unaligned');
    const before = sha256(f);
    const journal = `${f}.journal`;
    const ours = repairJson(f, '--journal', journal);
    expect(ours.status, ours.stderr).toBe(4); // the image is clean, but not its data
    expect(ours.stderr).toMatch(
      /dropped: L2 table at 0x40000, entry 0 \(guest offset 0x0\) pointed to unaligned host offset 0x50200/,
    );
    expect(ours.stderr).toContain(`qcow2-doctor undo ${journal} puts it back`);
    expect(ours.stderr).toMatch(/lost: guest 0x0–0xffff \(64 KiB\)/);
    expect(ours.json?.['guest-ranges-lost']).toEqual([{ start: 0, length: 65536 }]);
    expect(qemuCheck(f).status).toBe(0);
    expect(readsBack(f, { byte: 0x11, offset: 65536, length: 65536 })).toBe(true);
    expect(readsBack(f, { byte: 0, offset: 0, length: 65536 })).toBe(true);
    expect(cli('undo', journal).status).toBe(0);
    expect(sha256(f)).toBe(before);
  });

  it('an L2 entry pointing past the end of the file is dropped (qemu-img -r all leaves the error)', () => {
    const f = scenario('data-beyond-eof');
    const q = qemuRepairedCopy(f);
    expect(qemuCheck(q).status).toBe(2);
    const ours = repairJson(f, '--no-journal');
    expect(ours.status, ours.stderr).toBe(4); // the image is clean, but not its data
    expect(ours.json?.['guest-ranges-lost']).toEqual([{ start: 65536, length: 65536 }]);
    expect(readsBack(f, { byte: 0x11, offset: 0, length: 65536 })).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('--cautious keeps refusing a pointer nothing can read, and frees nothing', () => {
    const f = scenario('data-unaligned');
    const ours = cli('check', '-r', 'all', '--cautious', '--no-journal', f);
    expect(ours.status).toBe(2);
    expect(ours.stderr).toMatch(
      /not repaired: L2 table at 0x40000, entry 0 maps guest data to unaligned host offset 0x50200/,
    );
    expect(ours.stderr).not.toMatch(/dropped:/);
  });
});
