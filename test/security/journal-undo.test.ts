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
      repairedSha256: hash(first.subarray(0, 1)),
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

describe('journal integrity: the repaired bytes are recorded and compared', () => {
  const cli = (args: string[]) => run('node', [join(process.cwd(), 'bin', 'qcow2-doctor.cjs'), ...args]);

  it('the journal records SHA-256 of every region as the repair left it, and they match the image', async () => {
    const f = scenario('refcount-zero');
    const journal = join(t.dir, 'rz-integrity.journal');
    expect((await repairFile({ image: f, mode: 'all', journal })).applied).toBe(true);
    const { meta } = await readJournal(journal);
    const img = readFileSync(f);
    for (const r of meta.regions.filter((x) => x.savedLength > 0))
      expect(r.repairedSha256).toBe(hash(img.subarray(r.offset, r.offset + r.savedLength)));
    // The repair changed what it journaled: the repaired bytes are not the original ones.
    expect(meta.regions.some((r) => r.savedLength > 0 && r.repairedSha256 !== r.sha256)).toBe(true);
  });

  it('undo refuses an image changed after the repair, naming the field (one line, exit 1, nothing written)', async () => {
    const f = scenario('leak');
    const before = sha256(f);
    const journal = join(t.dir, 'leak-changed.journal');
    expect((await repairFile({ image: f, mode: 'all', journal })).applied).toBe(true);
    const { meta } = await readJournal(journal);
    const i = meta.regions.findIndex((r) => r.savedLength > 0);
    const r = meta.regions[i]!;
    // Someone writes into a region the repair wrote, after the repair.
    const img = readFileSync(f);
    img[r.offset + r.savedLength - 1]! ^= 0x5a;
    writeFileSync(f, img);
    const changed = sha256(f);
    await expect(undoRepair(journal)).rejects.toThrow(new RegExp(`regions\\[${i}\\]\\.repairedSha256`));
    const out = cli(['undo', journal]);
    expect(out.status).toBe(1);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
    expect(out.stderr).toMatch(
      /refusing to undo: the image changed since the repair: .*regions\[\d+\]\.repairedSha256/,
    );
    expect(sha256(f)).toBe(changed);
    // Put back as the repair left it, undo goes through and restores the original bytes.
    img[r.offset + r.savedLength - 1]! ^= 0x5a;
    writeFileSync(f, img);
    await undoRepair(journal);
    expect(sha256(f)).toBe(before);
  });

  it('a crafted journal whose recorded repaired bytes are not the target bytes is refused before writing', async () => {
    const f = scenario('leak');
    const journal = join(t.dir, 'leak-crafted.journal');
    expect((await repairFile({ image: f, mode: 'all', journal })).applied).toBe(true);
    const { meta, data } = await readJournal(journal);
    const after = sha256(f);
    // Well-formed (every checksum of the journal itself holds), the target's real identity, but the
    // region would restore attacker bytes over bytes the repair never wrote.
    const evil = Buffer.alloc(512, 0xee);
    const region = {
      offset: 0,
      length: 512,
      savedLength: 512,
      dataOffset: 0,
      sha256: hash(evil),
      statesSha256: [hash(Buffer.alloc(512, 0x11))],
      repairedSha256: hash(Buffer.alloc(512, 0x11)),
    };
    const crafted = join(t.dir, 'crafted.journal');
    const { dataSha256: _d, ...rest } = meta;
    craftJournal(crafted, { ...rest, regions: [region] }, evil);
    await expect(undoRepair(crafted)).rejects.toThrow(/regions\[0\]\.repairedSha256/);
    expect(sha256(f)).toBe(after);
    // A journal without the field is refused when read, naming it.
    const missing = join(t.dir, 'missing.journal');
    const { repairedSha256: _r, ...noField } = region;
    craftJournal(missing, { ...rest, regions: [noField as typeof region] }, evil);
    await expect(readJournal(missing)).rejects.toThrow(/regions\[0\]\.repairedSha256 = undefined/);
    expect(data.length).toBeGreaterThan(0);
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
