// The repair's promises besides "the image is clean afterwards": it refuses images a running QEMU
// holds, read-only files and unwritable journals (one line, nothing changed); --dry-run writes
// nothing; --output-image leaves the original alone; the journal is verified; where QEMU silently
// shares or frees, we copy or keep and say so; -r leaks follows QEMU's mode logic.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCENARIOS } from '../check/scenarios.js';
import { patchU64, qemuCheck, qemuCheckHuman, readU64, run, sha256, tempDir } from '../helpers/qemu.js';
import { planRepairFile, repairFile, RepairRefusedError, undoRepair } from '../../engine/repair/index.js';
import { locksOn } from '../../engine/repair/refusals.js';
import { emptyLeakedClusters } from './guest-data.js';
import { readJournal } from '../../engine/repair/journal.js';

const t = tempDir('q2d-repair-safety-');
afterAll(t.cleanup);
let n = 0;
// The parity, journal and plan tests use leaks that hold no data (emptyLeakedClusters): leaked
// clusters that do are kept by -r leaks, unlike QEMU (test/repair/campaign-classes.test.ts).
const scenario = (name: string): string => {
  const dir = join(t.dir, `${name}-${n++}`);
  mkdirSync(dir);
  return SCENARIOS.find((s) => s.name === name)!.build(dir);
};
const CLI = join(process.cwd(), 'bin', 'qcow2-doctor.cjs');
const cli = (...args: string[]) => run('node', [CLI, ...args]);

describe('refusals: one line, nothing changed', () => {
  it('refuses an image a running qemu-io holds open (OFD locks in /proc/locks), then repairs it once QEMU is gone', async () => {
    const f = emptyLeakedClusters(scenario('leak'));
    const before = sha256(f);
    const q = spawn('qemu-io', ['-f', 'qcow2', f], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      for (let i = 0; i < 100 && (await locksOn(f)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await locksOn(f)).length).toBeGreaterThan(0);
      await expect(repairFile({ image: f, mode: 'all' })).rejects.toThrow(RepairRefusedError);
      await expect(repairFile({ image: f, mode: 'all' })).rejects.toThrow(/in use by/);
      const r = cli('check', '-r', 'all', f);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^qcow2-doctor: refusing to write .* in use/);
      expect(sha256(f)).toBe(before);
      expect(existsSync(`${f}.repair-journal`)).toBe(false);
    } finally {
      q.stdin.end('quit\n');
      await new Promise((r) => q.on('exit', r));
    }
    const out = await repairFile({ image: f, mode: 'all', journal: false });
    expect(out.applied).toBe(true);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('refuses a read-only file', async () => {
    const f = emptyLeakedClusters(scenario('leak'));
    chmodSync(f, 0o444);
    const before = sha256(f);
    await expect(repairFile({ image: f, mode: 'all' })).rejects.toThrow(/read-only \(mode 444\)/);
    const r = cli('check', '-r', 'all', f);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qcow2-doctor: refusing to write .*: the file is read-only \(mode 444\)\n$/);
    expect(sha256(f)).toBe(before);
    chmodSync(f, 0o644);
  });

  it('refuses when the journal cannot be written, before touching the image', async () => {
    const f = scenario('cross-link-data');
    const before = sha256(f);
    await expect(repairFile({ image: f, mode: 'all', journal: join(t.dir, 'no-such-dir', 'j') })).rejects.toThrow(
      /undo journal/,
    );
    const existing = join(t.dir, 'existing.journal');
    writeFileSync(existing, 'x');
    await expect(repairFile({ image: f, mode: 'all', journal: existing })).rejects.toThrow(/already exists/);
    expect(sha256(f)).toBe(before);
  });
});

describe('dry run, copies, journal', () => {
  it('--dry-run prints the exact plan (text and JSON) and writes nothing', async () => {
    const f = scenario('cross-link-data');
    const before = sha256(f);
    const plan = await planRepairFile(f, 'all');
    expect(plan.steps.length).toBeGreaterThan(0);
    const text = cli('check', '-r', 'all', '--dry-run', f);
    expect(text.stdout).toMatch(/^Repair plan for /);
    expect(text.stdout).toMatch(/0x40008 l2-entry: 8000000000050000 -> 80000000000[0-9a-f]{5}/);
    expect(text.stdout).toContain('Expected after repair: 0 errors, 0 leaked clusters');
    const json = cli('check', '-r', 'all', '--dry-run', '--output=json', f);
    const doc = JSON.parse(json.stdout) as {
      plan: {
        steps: Array<{ phase: string; writes: Array<{ offset: number; old: string; new: string; why: string }> }>;
      };
    };
    const writes = doc.plan.steps.flatMap((s) => s.writes);
    expect(writes.length).toBe(plan.steps.reduce((k, s) => k + s.writes.length, 0));
    expect(writes.every((w) => typeof w.offset === 'number' && w.old.length === w.new.length && w.why.length > 0)).toBe(
      true,
    );
    expect(doc.plan.steps.map((s) => s.phase)).toEqual(plan.steps.map((s) => s.phase));
    expect(sha256(f)).toBe(before);
  });

  it('--output-image repairs a copy and leaves the original byte for byte', async () => {
    const f = scenario('refcount-zero');
    const before = sha256(f);
    const copy = join(t.dir, 'repaired-copy.qcow2');
    const r = cli('check', '-r', 'all', '--output-image', copy, f);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/repaired a copy \((reflink|sparse-copy)\)/);
    expect(sha256(f)).toBe(before);
    expect(qemuCheck(copy).status).toBe(0);
    expect(qemuCheck(f).status).toBe(2);
    // A sparse copy does not allocate the guest's holes.
    expect(statSync(copy).blocks * 512).toBeLessThanOrEqual(statSync(f).blocks * 512 + 65536 * 4);
  });

  it('journals before writing; undo verifies checksums and refuses an image changed since', async () => {
    const f = scenario('refcount-zero');
    const before = sha256(f);
    const size0 = statSync(f).size;
    const journal = join(t.dir, 'rz.journal');
    const out = await repairFile({ image: f, mode: 'all', journal });
    expect(out.applied).toBe(true);
    const j = await readJournal(journal);
    expect(j.meta.originalLength).toBe(size0);
    expect(j.meta.regions.length).toBeGreaterThan(0);
    // Someone changes a region the repair wrote (here: the refcount table pointer): undo refuses,
    // nothing changed, unless forced.
    expect(j.meta.regions.some((r) => r.offset <= 48 && r.offset + r.length >= 56)).toBe(true);
    patchU64(f, 48, 0x12340000);
    const changed = sha256(f);
    await expect(undoRepair(journal)).rejects.toThrow(/changed since the repair/);
    expect(sha256(f)).toBe(changed);
    await undoRepair(journal, { force: true });
    expect(sha256(f)).toBe(before);
    // A damaged journal is refused.
    const bad = join(t.dir, 'bad.journal');
    const bytes = readFileSync(journal);
    bytes[bytes.length - 1]! ^= 0xff;
    writeFileSync(bad, bytes);
    await expect(readJournal(bad)).rejects.toThrow(/checksum/);
  });

  it('the CLI prints the journal path and `undo` restores the original SHA-256', () => {
    const f = scenario('cross-link-data');
    const before = sha256(f);
    const r = cli('check', '-r', 'all', f);
    // One of the two cross-linked guest clusters lost its own cluster, freed: lost, at a place unknown (4).
    expect(r.status, r.stderr).toBe(4);
    const m = /undo journal: (\S+)/.exec(r.stderr);
    expect(m).not.toBeNull();
    expect(sha256(f)).not.toBe(before);
    const u = cli('undo', m![1]!);
    expect(u.status, u.stderr).toBe(0);
    expect(sha256(f)).toBe(before);
  });
});

describe('QEMU-compatible output and mode logic', () => {
  it('a leak: same stderr lines, repaired block, summary and exit code as qemu-img check -r leaks', () => {
    const f = emptyLeakedClusters(scenario('leak'));
    const q = `${f}.qemu`;
    copyFileSync(f, q);
    const theirs = qemuCheckHuman(q, 'leaks');
    const ours = cli('check', '-r', 'leaks', '--no-journal', f);
    expect(ours.status).toBe(theirs.status);
    expect(ours.stdout).toBe(theirs.stdout);
    expect(ours.stderr).toBe(theirs.stderr);
  });

  it('-r leaks where QEMU needs a rebuild: its error, exit 1, nothing changed', () => {
    const f = scenario('refcount-zero');
    const q = `${f}.qemu`;
    copyFileSync(f, q);
    const before = sha256(f);
    const theirs = qemuCheckHuman(q, 'leaks');
    const ours = cli('check', '-r', 'leaks', f);
    expect(theirs.status).toBe(1);
    expect(ours.status).toBe(1);
    expect(ours.stdout).toBe('');
    expect(ours.stderr).toContain('ERROR need to rebuild refcount structures');
    expect(sha256(f)).toBe(before);
  });

  it('-r leaks leaves corruptions (exit 2) exactly where QEMU does', () => {
    for (const name of ['cross-link-data', 'refcount-too-high', 'copied-clear-l2', 'data-unaligned']) {
      const f = emptyLeakedClusters(scenario(name));
      const q = `${f}.qemu`;
      copyFileSync(f, q);
      const theirs = qemuCheck(q, 'leaks');
      const ours = cli('check', '-r', 'leaks', '--no-journal', '--output=json', f);
      expect(ours.status, `${name}: ${ours.stderr}`).toBe(theirs.status);
      const oj = JSON.parse(ours.stdout) as Record<string, unknown>;
      expect(oj.corruptions, name).toBe(theirs.json?.corruptions);
      expect(oj['leaks-fixed'], name).toBe(theirs.json?.['leaks-fixed']);
    }
  });

  it('JSON after -r all has the final counters and the fixed counts', () => {
    const f = emptyLeakedClusters(scenario('leak'));
    const q = `${f}.qemu`;
    copyFileSync(f, q);
    const theirs = qemuCheck(q, 'all');
    const ours = cli('check', '-r', 'all', '--no-journal', '--output=json', f);
    const oj = JSON.parse(ours.stdout) as Record<string, unknown>;
    for (const k of [
      'leaks-fixed',
      'corruptions-fixed',
      'check-errors',
      'image-end-offset',
      'allocated-clusters',
      'total-clusters',
    ])
      expect(oj[k], k).toBe(theirs.json?.[k]);
  });
});

describe('where QEMU loses or hides data, we keep it and say so', () => {
  it('a cross-link is resolved by copying the cluster, not by silent sharing', async () => {
    const f = scenario('cross-link-data');
    const q = `${f}.qemu`;
    copyFileSync(f, q);
    qemuCheck(q, 'all');
    const out = await repairFile({ image: f, mode: 'all', journal: false });
    const note = out.plan.fixes.find((x) => x.kind === 'cross-link-copied');
    expect(note?.differsFromQemu).toBe(true);
    expect(note?.text).toMatch(/copied to cluster \d+ so each referrer keeps its own data/);
    // QEMU: both L2 entries share cluster 5 without COPIED. Ours: two clusters, both COPIED.
    expect(readU64(q, 0x40000)).toBe(0x50000n);
    expect(readU64(q, 0x40008)).toBe(0x50000n);
    const e0 = readU64(f, 0x40000);
    const e1 = readU64(f, 0x40008);
    expect(e0 & 0x8000000000000000n).toBe(0x8000000000000000n);
    expect(e1 & 0x8000000000000000n).toBe(0x8000000000000000n);
    expect(e0 & 0xffffffffffffn).not.toBe(e1 & 0xffffffffffffn);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('a snapshot entry with a damaged L1 offset is restored with its data (QEMU frees its clusters and leaves the entry)', async () => {
    const f = scenario('snapshot-l1-unaligned');
    const q = `${f}.qemu`;
    copyFileSync(f, q);
    qemuCheck(q, 'all');
    // QEMU: the entry stays broken, the snapshot cannot be read.
    expect(
      run('qemu-img', ['convert', '-f', 'qcow2', '-l', 'snapshot.name=snap1', '-O', 'raw', q, `${q}.raw`]).status,
    ).not.toBe(0);
    const out = await repairFile({ image: f, mode: 'all', journal: false });
    const note = out.plan.fixes.find((x) => x.kind === 'snapshot-l1-restored');
    expect(note?.text).toMatch(/offset 0x70200 → 0x70000/);
    expect(qemuCheck(f).status).toBe(0);
    // Ours: the snapshot reads back as it was taken (0x11 over the first 128 KiB).
    const raw = `${f}.snap.raw`;
    expect(run('qemu-img', ['convert', '-f', 'qcow2', '-l', 'snapshot.name=snap1', '-O', 'raw', f, raw]).status).toBe(
      0,
    );
    const b = readFileSync(raw).subarray(0, 128 * 1024);
    expect(b.every((x) => x === 0x11)).toBe(true);
  });

  it('a snapshot whose data cannot be found keeps its clusters and is left for a human', async () => {
    const f = scenario('snapshot-table-beyond-eof');
    const out = await repairFile({ image: f, mode: 'all', journal: false });
    expect(out.plan.refusals.length).toBeGreaterThan(0);
    expect(out.plan.fixes.some((x) => x.kind === 'leaks-kept')).toBe(true);
    expect(Number(qemuCheck(f).json?.leaks)).toBeGreaterThan(0);
  });

  it('an L1 entry pointing past the end of the file is re-linked to its orphaned L2 table', async () => {
    const f = scenario('l2-beyond-eof');
    const out = await repairFile({ image: f, mode: 'all', journal: false });
    const note = out.plan.fixes.find((x) => x.kind === 're-link-l2');
    expect(note?.text).toMatch(/re-linked to the orphaned L2 table at 0x40000/);
    expect(readU64(f, 0x30000)).toBe(0x8000000000040000n);
    expect(run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x11 0 128k', f]).stdout).toMatch(/read 131072\/131072/);
  });
});
