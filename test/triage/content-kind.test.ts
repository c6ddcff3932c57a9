// Files without a qcow2 header are told apart: a text file and random bytes are not disk images, a
// raw disk (partition table, file system) is a raw disk, and a qcow2 whose header was zeroed is a
// damaged qcow2 that salvage can read. QEMU says the same "raw, no checks" (exit 63) for all of them.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQcow2, qemuImg, qemuIo, run, writeBytes, tempDir } from '../helpers/qemu.js';
import { guessContent } from '../../engine/triage/content-kind.js';
import { triageImage } from '../../engine/triage/triage-image.js';

const t = tempDir('q2d-content-');
const file = (n: string) => join(t.dir, n);

beforeAll(() => {
  writeFileSync(file('notes.qcow2'), 'customer notes: the VM stopped booting on Monday\n'.repeat(2000));
  writeFileSync(file('random.qcow2'), randomBytes(1 << 20));
  // A qcow2 whose first 512 bytes (the whole header) were zeroed; its tables are intact.
  createQcow2(file('zeroed-header.qcow2'), '64M');
  qemuIo(file('zeroed-header.qcow2'), ['write -P 0x5a 0 1M', 'write -P 0xa5 8M 64k']);
  writeBytes(file('zeroed-header.qcow2'), 0, new Uint8Array(512));
  // A raw disk with an MBR partition table (signature 55 aa at 510) and a partition entry.
  qemuImg('create', '-f', 'raw', file('disk.img'), '8M');
  const mbr = new Uint8Array(512);
  mbr.set([0x00, 0x20, 0x21, 0x00, 0x83, 0x8a, 0x08, 0x82, 0x00, 0x08], 446);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  writeBytes(file('disk.img'), 0, mbr);
  qemuImg('create', '-f', 'raw', file('zeros.img'), '1M');
});
afterAll(t.cleanup);

describe('what a file without a qcow2 header is', () => {
  it.each([
    ['notes.qcow2', 'not-disk', /^not a disk image: a text file$/],
    ['random.qcow2', 'not-disk', /^not a disk image: no partition table, file system or qcow2 table found$/],
    ['zeros.img', 'not-disk', /^not a disk image/],
    ['disk.img', 'raw-disk', /^raw disk: a raw disk \(MBR partition table\)/],
    ['zeroed-header.qcow2', 'damaged-header', /^damaged qcow2 header: .*tables at 0x[0-9a-f]+.*qcow2-doctor salvage/],
  ])('%s is %s', async (name, kind, sentence) => {
    // QEMU itself cannot check any of them: it probes them as raw.
    expect(run('qemu-img', ['check', file(name)]).status).toBe(63);
    expect((await guessContent(file(name))).kind).toBe(kind);
    const row = await triageImage(file(name));
    expect(row.verdict).toBe('not-qcow2');
    expect(row.exitCode).toBe(63);
    expect(row.content).toBe(kind);
    expect(row.error).toMatch(sentence);
  });

  it('the CLI triage JSON carries the kind', () => {
    const r = run('node', ['bin/qcow2-doctor.cjs', 'triage', '--output=json', file('zeroed-header.qcow2')]);
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'not-qcow2', content: 'damaged-header' });
  });
});
