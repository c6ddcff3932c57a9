// Salvage pieces on their own: cluster-size and extended-L2 inference with the header gone, the
// sequential qcow2 writer, stop-and-resume of the scan, damaged compressed streams, the CLI.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { salvageImage } from '../../engine/salvage/salvage.js';
import { Qcow2SequentialWriter } from '../../engine/salvage/qcow2-output.js';
import { FileIO } from '../../engine/io/file-io.js';
import { CancelToken } from '../../engine/base/task-control.js';
import { CancelledError } from '../../engine/base/errors.js';
import { crc32 } from 'node:zlib';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readU64, run, sha256, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-unit-');
afterAll(t.cleanup);
const p = (n: string): string => join(t.dir, n);

function ref(img: string, out: string): Buffer {
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, out);
  return readFileSync(out);
}

describe('salvage with the header destroyed', () => {
  for (const cs of [512, 4096, 65536, 2 * 1024 * 1024]) {
    it(`infers a ${cs}-byte cluster size and recovers every byte`, async () => {
      const f = p(`cs${cs}.qcow2`);
      createQcow2(f, '8M', { cluster_size: cs });
      qemuIo(f, ['write -P 0x61 0 20k', 'write -P 0x62 3M 9k', 'write -P 0x63 6M 1k']);
      const want = ref(f, p(`cs${cs}.ref`));
      writeBytes(f, 0, new Uint8Array(Math.min(cs, 4096)));
      const before = sha256(f);
      const r = await salvageImage(f, p(`cs${cs}.out`), { virtualSize: 8 * 1024 * 1024 });
      expect(r.header).toBe('missing');
      expect(r.clusterSize).toBe(cs);
      expect(r.clusterSizeSource).toBe('inferred');
      expect(readFileSync(p(`cs${cs}.out`)).equals(want)).toBe(true);
      expect(sha256(f)).toBe(before);
    });
  }

  it('detects extended L2 entries from the tables themselves', async () => {
    const f = p('ext.qcow2');
    createQcow2(f, '16M', { cluster_size: 65536, extended_l2: true });
    qemuIo(f, ['write -P 0x11 0 8k', 'write -P 0x12 100k 70k', 'write -c -P 0x13 1M 64k', 'write -z 2M 64k']);
    const want = ref(f, p('ext.ref'));
    writeBytes(f, 0, new Uint8Array(65536));
    const r = await salvageImage(f, p('ext.out'), { virtualSize: 16 * 1024 * 1024 });
    expect(r.extendedL2).toBe(true);
    expect(readFileSync(p('ext.out')).equals(want)).toBe(true);
  });

  it('guesses the virtual size from the mapped data and says so', async () => {
    const f = p('vs.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x71 0 4k', 'write -P 0x72 2500k 4k']);
    writeBytes(f, 0, new Uint8Array(4096));
    const r = await salvageImage(f, p('vs.out'));
    expect(r.virtualSizeSource).toBe('guessed');
    expect(r.virtualSize).toBe(3 * 1024 * 1024);
    expect(r.guesses.join('\n')).toMatch(/virtual size unknown/);
    expect(statSync(p('vs.out')).size).toBe(3 * 1024 * 1024);
  });
});

describe('the sequential qcow2 writer', () => {
  it('writes an image qemu-img checks clean and reads back exactly (several L1 entries, two refcount blocks)', async () => {
    const out = p('writer.qcow2');
    const cs = 512;
    const size = 1024 * 1024; // 2048 clusters, 32 L1 entries
    const io = await FileIO.open(out, { create: true });
    const w = new Qcow2SequentialWriter(io, 9, size);
    const expected = new Uint8Array(size);
    for (let g = 0; g < size / cs; g += 7) {
      const d = new Uint8Array(cs).fill((g % 250) + 1);
      await w.put(g, d);
      expected.set(d, g * cs);
    }
    await w.finish();
    await io.close();
    const chk = qemuCheck(out);
    expect(chk.status).toBe(0);
    expect(chk.json?.corruptions ?? 0).toBe(0);
    expect(chk.json?.leaks ?? 0).toBe(0);
    expect(ref(out, p('writer.raw')).equals(Buffer.from(expected))).toBe(true);
  });

  it('refuses clusters out of order', async () => {
    const io = await FileIO.open(p('order.qcow2'), { create: true });
    const w = new Qcow2SequentialWriter(io, 16, 1 << 20);
    await w.put(3, new Uint8Array(65536).fill(1));
    await expect(w.put(2, new Uint8Array(65536))).rejects.toThrow('out of order');
    await io.close();
  });
});

describe('stop and resume', () => {
  it('saves the scan position on cancel and continues from it', async () => {
    const f = p('big.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x21 0 12M', 'write -P 0x22 40M 8M']);
    const want = ref(f, p('big.ref'));
    writeBytes(f, 0x30000, new Uint8Array(8)); // L1 zeroed: the scan is needed
    const state = p('big.state');
    const cancel = new CancelToken();
    let firstRun = 0;
    await expect(
      salvageImage(f, p('big.out'), {
        resumeState: state,
        cancel,
        progress: (e) => {
          if (e.stage === 'scanning clusters') {
            firstRun = e.fraction;
            cancel.cancel();
          }
        },
      }),
    ).rejects.toThrow(CancelledError);
    expect(existsSync(state)).toBe(true);
    const saved = JSON.parse(readFileSync(state, 'utf8'));
    expect(saved.findings.position).toBeGreaterThan(0);
    expect(saved.findings.position).toBeLessThan(statSync(f).size);
    expect(existsSync(p('big.out'))).toBe(false);
    let resumedAt = -1;
    const r = await salvageImage(f, p('big.out'), {
      resumeState: state,
      progress: (e) => {
        if (e.stage === 'scanning clusters' && resumedAt < 0) resumedAt = e.fraction;
      },
    });
    expect(resumedAt).toBeGreaterThan(firstRun); // the second run did not start over
    expect(r.scan.complete).toBe(true);
    expect(readFileSync(p('big.out')).equals(want)).toBe(true);
  });

  it('refuses a state file of another image', async () => {
    const a = p('ra.qcow2');
    const b = p('rb.qcow2');
    createQcow2(a, '1M');
    createQcow2(b, '2M');
    qemuIo(b, ['write -P 1 0 256k']);
    await salvageImage(a, undefined, { resumeState: p('r.state') });
    await expect(salvageImage(b, undefined, { resumeState: p('r.state') })).rejects.toThrow(/belongs to another file/);
  });
});

describe('damaged data', () => {
  it('reports a compressed cluster that no longer decompresses as lost, and keeps the rest', async () => {
    const f = p('cz.qcow2');
    createQcow2(f, '4M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x31 0 64k', 'write -c -P 0x32 64k 64k', 'write -P 0x33 128k 64k']);
    const want = ref(f, p('cz.ref'));
    // L2 at 0x40000; entry 1 is the compressed descriptor: overwrite its stream with garbage.
    const desc = readU64(f, 0x40000 + 8);
    expect(desc & (1n << 62n)).not.toBe(0n);
    const off = Number(desc & ((1n << 54n) - 1n));
    writeBytes(f, off, new Uint8Array(64).fill(0xff));
    const r = await salvageImage(f, p('cz.out'));
    const v = r.views[0]!;
    expect(v.lost).toEqual([
      { start: 65536, end: 131072, reason: `compressed cluster at 0x${off.toString(16)} does not decompress` },
    ]);
    const got = readFileSync(p('cz.out'));
    expect(got.subarray(0, 65536).equals(want.subarray(0, 65536))).toBe(true);
    expect(got.subarray(131072).equals(want.subarray(131072))).toBe(true);
    expect(got.subarray(65536, 131072).every((b) => b === 0)).toBe(true);
  });

  it("says so when the backing file is missing, and keeps the overlay's own data", async () => {
    const base = p('mb-base.qcow2');
    const top = p('mb-top.qcow2');
    createQcow2(base, '4M');
    qemuIo(base, ['write -P 0x41 0 1M']);
    createQcow2(top, '4M', {}, { file: 'mb-base.qcow2', format: 'qcow2' });
    qemuIo(top, ['write -P 0x42 128k 64k']);
    run('mv', [base, `${base}.gone`]);
    const r = await salvageImage(top, p('mb.out'));
    expect(r.backing).toMatchObject({ found: false });
    expect(r.views[0]!.bytes.backingMissing).toBeGreaterThan(0);
    expect(r.views[0]!.bytes.recovered).toBe(65536);
    const got = readFileSync(p('mb.out'));
    expect(got.subarray(128 * 1024, 192 * 1024).every((b) => b === 0x42)).toBe(true);
    expect(got.subarray(0, 128 * 1024).every((b) => b === 0)).toBe(true);
  });
});

describe('qcow2-doctor salvage (CLI)', () => {
  const cli = (...args: string[]) => run('node', ['bin/qcow2-doctor.cjs', 'salvage', ...args]);

  it('salvages to qcow2 with a JSON report, by snapshot name, and never touches IMAGE', () => {
    const f = p('cli.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x51 0 64k']);
    qemuImg('snapshot', '-c', 'before', f);
    qemuIo(f, ['write -P 0x52 0 4k']);
    const snapRef = p('cli-snap.ref');
    qemuImg('convert', '-f', 'qcow2', '-O', 'raw', '-l', 'snapshot.name=before', f, snapRef);
    writeBytes(f, 0x3000, new Uint8Array(32)); // L1 zeroed
    const before = sha256(f);
    const r = cli(f, p('cli.out.qcow2'), '-f', 'qcow2', '--snapshot', 'before', '--report', p('cli.json'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Snapshot 1 \(before\)/);
    expect(r.stdout).toMatch(/Other disks in this image .*\n {2}active: active disk, 8\.00 MiB/);
    expect(sha256(f)).toBe(before);
    expect(qemuCheck(p('cli.out.qcow2')).status).toBe(0);
    expect(ref(p('cli.out.qcow2'), p('cli.back')).equals(readFileSync(snapRef))).toBe(true);
    const j = JSON.parse(readFileSync(p('cli.json'), 'utf8'));
    expect(j.views[0].kind).toBe('snapshot');
    expect(j.views[0].bytes.lost).toBe(0);
  });

  it('scans only with --dry-run, and refuses bad options in one line', () => {
    const f = p('cli2.qcow2');
    createQcow2(f, '1M');
    const d = cli(f, '--dry-run');
    expect(d.status).toBe(0);
    expect(d.stdout).toMatch(/Active disk/);
    const bad = cli(f, p('x.out'), '--format', 'vmdk');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual(['qcow2-doctor: --format must be raw or qcow2 (got vmdk)']);
    expect(existsSync(p('x.out'))).toBe(false);
    const snap = cli(f, p('x.out'), '--snapshot', 'nope');
    expect(snap.status).toBe(1);
    expect(snap.stderr).toMatch(/snapshot 'nope' not found/);
  });
});

describe('placement guesses are reported as guesses', () => {
  it('marks L2 tables placed by host order with a confidence below 1 when the slots are ambiguous', async () => {
    const f = p('sparse.qcow2');
    createQcow2(f, '1M', { cluster_size: 512 });
    // 32 L1 slots of 32 KiB; only three used, so a zeroed L1 leaves 3 tables for 32 slots.
    qemuIo(f, ['write -P 0x11 0 1k', 'write -P 0x12 160k 1k', 'write -P 0x13 300k 1k']);
    const l1 = Number(readU64(f, 40));
    writeBytes(f, l1, new Uint8Array(32 * 8));
    const r = await salvageImage(f, p('sparse.out'));
    const v = r.views[0]!;
    expect(v.l2Tables).toHaveLength(3);
    for (const t of v.l2Tables) {
      expect(t.source).toBe('ordering');
      expect(t.confidence).toBeLessThan(0.5);
    }
    expect(v.bytes.guessed).toBe(v.bytes.recovered);
    expect(v.confidence).toBe(0);
    expect(r.guesses.join('\n')).toMatch(
      /3 L2 table\(s\) with no surviving L1 entry placed in host order into 32 free L1 slot/,
    );
  });

  it('leaves out an unreferenced L2 table when the active L1 is intact, and says its data is lost', async () => {
    const f = p('leak.qcow2');
    createQcow2(f, '1M', { cluster_size: 512 });
    qemuIo(f, ['write -P 0x11 0 1k', 'write -P 0x12 160k 1k']);
    const l1 = Number(readU64(f, 40));
    writeBytes(f, l1 + 5 * 8, new Uint8Array(8)); // drop the entry of slot 5: its table is now unreferenced
    const want = ref(f, p('leak.ref')); // what QEMU shows: slot 5 unallocated
    const r = await salvageImage(f, p('leak.out'));
    expect(r.structures.unusedL2Tables).toHaveLength(1);
    expect(readFileSync(p('leak.out')).equals(want)).toBe(true);
    // Live by its refcount and mapping data no disk maps: a lost L1 entry, not a leak. Where it
    // belonged is one of the free slots: the 1 KiB is lost, never "nothing lost".
    expect(r.outcome?.exitCode).toBe(2);
    expect(r.views[0]!.bytes.lost).toBe(1024);
    expect(r.views[0]!.lost.some((l) => l.start <= 160 * 1024 && l.end >= 161 * 1024)).toBe(true);
    // Asked to use it: it goes in the first free slot after its predecessor in the file, as a guess
    // (31 free slots: the report says the position is uncertain).
    const r2 = await salvageImage(f, p('leak2.out'), { placeOrphans: true });
    const placed = r2.views[0]!.l2Tables.filter((t) => t.source === 'ordering');
    expect(placed).toEqual([{ l1Index: 1, host: r.structures.unusedL2Tables[0], source: 'ordering', confidence: 0.4 }]);
    expect(r2.views[0]!.bytes.guessed).toBe(1024);
  });
});

describe('what salvage refuses, in one line', () => {
  it('a file with no qcow2 structure at all', async () => {
    const f = p('plain.raw');
    writeFileSync(f, new Uint8Array(256 * 1024).fill(0x5a));
    await expect(salvageImage(f, p('plain.out'))).rejects.toThrow(
      /no qcow2 header and no qcow2 tables found \(4 clusters scanned\)/,
    );
    expect(existsSync(p('plain.out'))).toBe(false);
  });

  it('an encrypted image (the output would be ciphertext)', async () => {
    // Legacy AES (crypt_method 1) needs no key material in the file, so it is made by patching the
    // field (creating a LUKS image times key derivation, which is unreliable on a busy machine).
    const f = p('aes.qcow2');
    createQcow2(f, '1M');
    writeBytes(f, 32, new Uint8Array([0, 0, 0, 1]));
    expect(qemuImg('info', '--output=json', f)).toMatch(/"encrypted": true/);
    await expect(salvageImage(f, p('aes.out'))).rejects.toThrow(
      'salvage cannot decrypt guest data (header.crypt_method = 1)',
    );
  });

  it('an empty file', async () => {
    writeFileSync(p('empty.qcow2'), '');
    await expect(salvageImage(p('empty.qcow2'), p('empty.out'))).rejects.toThrow(/empty file/);
  });
});

describe('chains and odd sizes', () => {
  it('salvages a damaged base under an intact overlay', async () => {
    const base = p('db-base.qcow2');
    const top = p('db-top.qcow2');
    createQcow2(base, '4M', { cluster_size: 4096 });
    qemuIo(base, ['write -P 0x61 0 1M', 'write -P 0x62 3M 64k']);
    createQcow2(top, '4M', { cluster_size: 4096 }, { file: 'db-base.qcow2', format: 'qcow2' });
    qemuIo(top, ['write -P 0x63 512k 64k']);
    const want = ref(top, p('db.ref'));
    writeBytes(base, 0, new Uint8Array(4096)); // the base's header is gone
    const r = await salvageImage(top, p('db.out'), { format: 'qcow2' });
    expect(r.backing).toMatchObject({ found: true, format: 'qcow2' });
    expect(r.backing!.report!.header).toBe('missing');
    expect(qemuCheck(p('db.out')).status).toBe(0);
    expect(ref(p('db.out'), p('db.back')).equals(want)).toBe(true);
  });

  it('keeps a virtual size that is not a multiple of the cluster size', async () => {
    const f = p('odd.qcow2');
    createQcow2(f, 1_000_448, { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x71 0 64k', 'write -P 0x72 983040 17408']);
    const want = ref(f, p('odd.ref'));
    writeBytes(f, 0x30000, new Uint8Array(8));
    const r = await salvageImage(f, p('odd.out'), { format: 'qcow2' });
    expect(r.virtualSize).toBe(1_000_448);
    expect(qemuCheck(p('odd.out')).status).toBe(0);
    expect(ref(p('odd.out'), p('odd.back')).equals(want)).toBe(true);
  });
});

describe('random damage never crashes the salvage', () => {
  it('survives 12 images with random 4 KiB blocks overwritten, and its qcow2 outputs check clean', async () => {
    const f0 = p('rnd0.qcow2');
    createQcow2(f0, '8M', { cluster_size: 4096 });
    qemuIo(f0, ['write -P 0x11 0 300k', 'write -c -P 0x12 1M 64k', 'write -P 0x13 3M 100k', 'write -P 0x14 6M 40k']);
    qemuImg('snapshot', '-c', 's', f0);
    qemuIo(f0, ['write -P 0x15 8k 16k']);
    const size = statSync(f0).size;
    const junkOrZero = (k: number): Uint8Array =>
      k % 2 ? new Uint8Array(4096).map((_, i) => (i * 31 + k) & 0xff) : new Uint8Array(4096);
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    for (let k = 0; k < 12; k++) {
      const f = p(`rnd${k + 1}.qcow2`);
      writeFileSync(f, readFileSync(f0));
      for (let n = 0; n < 3; n++) {
        const block = rnd() % Math.ceil(size / 4096);
        const junk = new Uint8Array(4096).map(() => rnd() & 0xff);
        writeBytes(f, block * 4096, k % 2 ? junk : new Uint8Array(4096));
      }
      const out = p(`rnd${k + 1}.out`);
      // Every third one also loses its header and is salvaged without any hint.
      if (k % 3 === 2) writeBytes(f, 0, junkOrZero(k));
      const r = await salvageImage(f, out, {
        format: 'qcow2',
        ...(k % 3 === 2 ? {} : { virtualSize: 8 * 1024 * 1024 }),
      });
      if (k % 3 !== 2) expect(r.views[0]!.virtualSize).toBe(8 * 1024 * 1024);
      expect(qemuCheck(out).status).toBe(0);
    }
  });
});

describe('clues from the guest data', () => {
  /** A GPT header (92 bytes, CRC filled in) claiming to sit at myLba. */
  function gptHeader(myLba: number, altLba: number, lastLba: number): Uint8Array {
    const h = Buffer.alloc(512);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(BigInt(myLba), 24);
    h.writeBigUInt64LE(BigInt(altLba), 32);
    h.writeBigUInt64LE(34n, 40);
    h.writeBigUInt64LE(BigInt(lastLba - 33), 48);
    h.fill(0x42, 56, 72); // disk GUID
    h.writeBigUInt64LE(BigInt(myLba === 1 ? 2 : lastLba - 32), 72);
    h.writeUInt32LE(128, 80);
    h.writeUInt32LE(128, 84);
    h.writeUInt32LE(crc32(h.subarray(0, 92)), 16);
    return h;
  }

  it('places the tables holding GPT headers and takes the disk size from them when all metadata is gone', async () => {
    const raw = p('gpt.raw');
    const size = 1024 * 1024;
    const last = size / 512 - 1;
    writeFileSync(raw, new Uint8Array(size));
    writeBytes(raw, 512, gptHeader(1, last, last));
    writeBytes(raw, last * 512, gptHeader(last, 1, last));
    writeBytes(raw, 320 * 1024, new Uint8Array(1024).fill(0x77));
    const f = p('gpt.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', raw, f);
    const l1 = Number(readU64(f, 40));
    writeBytes(f, l1, new Uint8Array(32 * 8)); // L1 gone
    writeBytes(f, 0, new Uint8Array(512)); // header gone
    const r = await salvageImage(f, p('gpt.out'));
    expect(r.virtualSize).toBe(size);
    expect(r.virtualSizeSource).toBe('guest-gpt');
    const placed = r.views[0]!.l2Tables;
    expect(
      placed
        .filter((t) => t.source === 'evidence')
        .map((t) => t.l1Index)
        .sort((a, b) => a - b),
    ).toEqual([0, 31]);
    // The table in between has no clue: its position is a guess, and the report says so.
    const middle = placed.filter((t) => t.source === 'ordering');
    expect(middle).toHaveLength(1);
    expect(middle[0]!.confidence).toBeLessThan(0.5);
    const got = readFileSync(p('gpt.out'));
    const want = readFileSync(raw);
    expect(got.subarray(0, 1024).equals(want.subarray(0, 1024))).toBe(true);
    expect(got.subarray(size - 512).equals(want.subarray(size - 512))).toBe(true);
  });
});

describe('outputs', () => {
  it('never writes over the image, its backing file, or an existing file without --force', async () => {
    const base = p('ow-base.qcow2');
    const f = p('ow.qcow2');
    createQcow2(base, '1M');
    createQcow2(f, '1M', {}, { file: 'ow-base.qcow2', format: 'qcow2' });
    qemuIo(f, ['write -P 0x44 0 64k']);
    const before = sha256(f);
    const baseBefore = sha256(base);
    await expect(salvageImage(f, f)).rejects.toThrow(/over the image itself/);
    await expect(salvageImage(f, base, { overwrite: true })).rejects.toThrow(/over its backing file/);
    writeFileSync(p('ow.out'), 'keep me');
    await expect(salvageImage(f, p('ow.out'))).rejects.toThrow(/already exists \(use --force to replace it\)/);
    expect(readFileSync(p('ow.out'), 'utf8')).toBe('keep me');
    await salvageImage(f, p('ow.out'), { overwrite: true });
    expect(statSync(p('ow.out')).size).toBe(1024 * 1024);
    expect(sha256(f)).toBe(before);
    expect(sha256(base)).toBe(baseBefore);
  });
});

describe('lost and found', () => {
  it('copies the data clusters of a destroyed L2 table out in host order, with their origin', async () => {
    const f = p('lf.qcow2');
    createQcow2(f, '8M');
    qemuIo(f, ['write -P 0x51 0 64k', 'write -P 0x52 3M 128k', 'write -P 0x53 1M 64k']);
    const map = JSON.parse(qemuImg('map', '--output=json', f)) as Array<{
      start: number;
      length: number;
      data: boolean;
      offset?: number;
    }>;
    const hosts = map
      .filter((m) => m.data && m.offset !== undefined)
      .flatMap((m) => Array.from({ length: m.length / 65536 }, (_, k) => m.offset! + k * 65536))
      .sort((a, b) => a - b);
    const raw = readFileSync(f);
    const want = Buffer.concat(hosts.map((h) => raw.subarray(h, h + 65536)));
    writeBytes(f, 0x40000, new Uint8Array(65536)); // the only L2 table
    const r = await salvageImage(f, p('lf.out'), { lostFound: p('lf.found') });
    expect(r.views[0]!.bytes.lost).toBe(8 * 1024 * 1024);
    expect(r.lostFound).toMatchObject({ clusters: hosts.length, bytes: hosts.length * 65536 });
    expect(r.lostFound!.runs[0]).toEqual({ host: hosts[0], length: hosts.length * 65536, at: 0 });
    expect(readFileSync(p('lf.found')).equals(want)).toBe(true);
  });

  it('finds nothing in a healthy image', async () => {
    const f = p('lf2.qcow2');
    createQcow2(f, '8M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x51 0 64k', 'write -c -P 0x52 3M 16k']);
    const r = await salvageImage(f, undefined, { lostFound: p('lf2.found') });
    expect(r.lostFound).toMatchObject({ clusters: 0, bytes: 0, runs: [] });
  });
});
