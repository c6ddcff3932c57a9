// Hostile journals and a full disk: an undo journal from elsewhere cannot truncate or overwrite a
// file it names, and a repair that runs out of space says the image is safe to restore and how.
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import { run, sha256, tempDir } from '../helpers/qemu.js';
import { repairFile, repairIO, undoRepair } from '../../engine/repair/index.js';
import { readJournal, type JournalMeta } from '../../engine/repair/journal.js';
import { FileIO } from '../../engine/io/file-io.js';
import { FaultIO } from '../../engine/io/fault-io.js';

const t = tempDir('q2d-journal-sec-');
afterAll(t.cleanup);
let n = 0;
const scenario = (name: string): string => {
  const dir = join(t.dir, `${name}-${n++}`);
  mkdirSync(dir);
  return SCENARIOS.find((s) => s.name === name)!.build(dir);
};
const hash = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Write a well-formed journal (valid magic and checksums) with whatever metadata an attacker likes. */
function craftJournal(path: string, meta: Omit<JournalMeta, 'dataSha256'>, data: Buffer): void {
  const body = Buffer.from(JSON.stringify({ ...meta, dataSha256: hash(data) }));
  const head = Buffer.alloc(12);
  head.write('Q2DJRNL1', 0, 'latin1');
  head.writeUInt32BE(body.length, 8);
  writeFileSync(path, Buffer.concat([head, body, data]));
}

describe('a crafted undo journal', () => {
  it('a crafted undo journal cannot truncate a file it names', async () => {
    const victim = join(t.dir, 'precious.txt');
    writeFileSync(victim, 'precious text that must survive\n');
    const st = statSync(victim);
    const before = sha256(victim);
    // No region at all: the journal would only truncate.
    const empty = join(t.dir, 'empty.journal');
    craftJournal(
      empty,
      { format: 1, image: victim, dev: st.dev, ino: st.ino, originalLength: 0, createdAt: '', regions: [] },
      Buffer.alloc(0),
    );
    await expect(undoRepair(empty)).rejects.toThrow(/journal metadata invalid: .* \(regions = /);
    // A region the attacker can compute (the victim's own first bytes), the victim's real identity,
    // and a length of 1: refused because the victim is not a qcow2 image; --force changes nothing.
    const first = readFileSync(victim).subarray(0, 8);
    const forged = join(t.dir, 'forged.journal');
    const region = {
      offset: 0,
      length: 8,
      savedLength: 1,
      dataOffset: 0,
      sha256: hash(first.subarray(0, 1)),
      statesSha256: [hash(first.subarray(0, 1))],
    };
    craftJournal(
      forged,
      { format: 1, image: victim, dev: st.dev, ino: st.ino, originalLength: 1, createdAt: '', regions: [region] },
      first.subarray(0, 1),
    );
    await expect(undoRepair(forged)).rejects.toThrow(/is not a qcow2 image/);
    await expect(undoRepair(forged, { force: true })).rejects.toThrow(/is not a qcow2 image/);
    expect(sha256(victim)).toBe(before);
    // Fields a restore acts on are checked: a negative offset is named.
    const neg = join(t.dir, 'neg.journal');
    craftJournal(
      neg,
      {
        format: 1,
        image: victim,
        dev: st.dev,
        ino: st.ino,
        originalLength: 1,
        createdAt: '',
        regions: [{ ...region, offset: -8 }],
      },
      first.subarray(0, 1),
    );
    await expect(readJournal(neg)).rejects.toThrow(/regions\[0\]\.offset = -8/);
    // The CLI: one line, exit 1.
    const r = run('node', [join(process.cwd(), 'bin', 'qcow2-doctor.cjs'), 'undo', forged]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(sha256(victim)).toBe(before);
  });

  it('undo refuses a qcow2 image that is not the file the journal was written for', async () => {
    const f = scenario('leak');
    const other = join(t.dir, 'other.qcow2');
    copyFileSync(f, other);
    const journal = join(t.dir, 'leak.journal');
    expect((await repairFile({ image: f, mode: 'all', journal })).applied).toBe(true);
    copyFileSync(f, other); // same bytes as the repaired image, another file
    const otherBefore = sha256(other);
    await expect(undoRepair(journal, { image: other })).rejects.toThrow(/not the file this journal was written for/);
    await expect(undoRepair(journal, { image: other, force: true })).rejects.toThrow(/not the file this journal/);
    expect(sha256(other)).toBe(otherBefore);
    // The real target is restored as before.
    await undoRepair(journal);
  });
});

describe('a full disk during a repair', () => {
  it('a repair that hits ENOSPC says the image is safe to restore and gives the undo command', async () => {
    const f = scenario('refcount-zero');
    const before = sha256(f);
    const journal = join(t.dir, 'enospc journal');
    const file = await FileIO.open(f, { write: true });
    const io = new FaultIO(file, [{ event: 'disk-full', errno: 'ENOSPC', once: false }]);
    let barriers = 0;
    const err = await repairIO(io, {
      mode: 'all',
      name: f,
      journal: { path: journal, imagePath: f },
      // After the first ordered write reaches the disk, the disk is full.
      onBarrier: () => {
        if (barriers++ === 0) io.event('disk-full');
      },
    }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    await file.close();
    expect(io.injected).toBeGreaterThan(0);
    expect(err?.code).toBe('ENOSPC');
    expect(err?.message).toMatch(/the disk is full \(ENOSPC\)/);
    expect(err?.message).toMatch(/safe to restore/);
    expect(err?.message).toContain(`qcow2-doctor undo '${journal}'`);
    expect(sha256(f)).not.toBe(before);
    await undoRepair(journal);
    expect(sha256(f)).toBe(before);
  });
});
