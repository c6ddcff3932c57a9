// The wizard's and triage's service requests, called as the renderer calls them (validated by the
// contract), on real images damaged at precise bytes and judged by qemu-img.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Service } from '../../engine/service/service.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { ContractError } from '../../engine/contract/errors.js';
import { createQcow2, patchU64, qemuCheck, qemuIo, readU64, sha256, tempDir } from '../helpers/qemu.js';
import { assertPatterns, makeDirty, makeLeaks, makeNeedsRebuild, makeRefcountErrors } from './images.js';

const t = tempDir('q2d-wizard-svc-');
let service: Service;
const held: ChildProcess[] = [];

beforeAll(async () => {
  service = new Service(await createServeHost(t.dir));
});
afterAll(async () => {
  for (const p of held) p.kill('SIGKILL');
  await service.dispose();
  t.cleanup();
});

async function open(name: string): Promise<string> {
  const o = await service.call('image.open', { ref: { kind: 'root', path: name } });
  await service.call('check.run', { handle: o.handle });
  return o.handle;
}

/** A qemu-io process holding the image open read-write (as a running VM would). */
async function holdOpen(file: string): Promise<ChildProcess> {
  const p = spawn('qemu-io', ['-f', 'qcow2', file], { stdio: ['pipe', 'pipe', 'pipe'] });
  held.push(p);
  // Wait until it has the image open: its prompt appears.
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => d.toString().includes('qemu-io>') && resolve());
    p.on('exit', (c) => reject(new Error(`qemu-io exited ${c}`)));
  });
  return p;
}

describe('triage.scan', () => {
  it("checks every qcow2 file of a folder and gives qemu-img check's verdicts, without absolute paths", async () => {
    makeLeaks(t.dir, 'tri/a-leaks.qcow2'.replace('tri/', ''));
    const rows = await service.call('triage.scan', { folder: { kind: 'root', path: '.' } });
    for (const r of rows) {
      const status = qemuCheck(join(t.dir, r.name)).status;
      expect({ name: r.name, verdict: r.verdict }).toEqual({
        name: r.name,
        verdict: { 0: 'clean', 1: 'unreadable', 2: 'corrupt', 3: 'leaks' }[status],
      });
      expect(r.ref).toEqual({ kind: 'root', path: r.name });
    }
    expect(rows.find((r) => r.name === 'a-leaks.qcow2')?.summary).toBe('1 leaked cluster');
    expect(JSON.stringify(rows)).not.toContain(t.dir);
  });
});

describe('safety: lock.status', () => {
  it('says nothing holds a free image and how much space a copy needs', async () => {
    makeLeaks(t.dir, 'free.qcow2');
    const h = await open('free.qcow2');
    const s = await service.call('lock.status', { handle: h });
    expect(s.locked).toBe(false);
    expect(s.spaceNeeded).toBeGreaterThan(0);
    expect(s.spaceFree).toBeGreaterThan(0);
  });

  it('names the process holding the image, says how to stop it, and the repair refuses', async () => {
    const f = makeLeaks(t.dir, 'held.qcow2');
    const before = sha256(f);
    const h = await open('held.qcow2');
    const q = await holdOpen(f);
    const s = await service.call('lock.status', { handle: h });
    expect(s.locked).toBe(true);
    expect(s.holder).toContain(`qemu-io (pid ${q.pid}`);
    expect(s.detail).toContain('then check again');
    const rows = await service.call('triage.scan', { refs: [{ kind: 'root', path: 'held.qcow2' }] });
    expect(rows[0]).toMatchObject({
      verdict: 'in-use',
      summary: 'in use by another program (a running VM?); as read now: 1 leaked cluster',
    });
    const plan = await service.call('repair.plan', { handle: h, mode: 'all' });
    const err = await service
      .call('repair.apply', { handle: h, planId: plan.planId, target: { kind: 'inPlace', journal: true } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ContractError);
    expect((err as ContractError).code).toBe('busy');
    expect(sha256(f)).toBe(before);
    q.kill('SIGKILL');
  });
});

describe('repair through the service', () => {
  it.each([
    ['leaks', makeLeaks],
    ['refcount errors', makeRefcountErrors],
    ['a dirty image', makeDirty],
    ['an image needing a refcount rebuild', makeNeedsRebuild],
  ])(
    '%s: a repaired copy is clean for qemu-img, guest data compared equal, original untouched',
    async (label, make) => {
      const name = `copy-${label.replace(/\W+/g, '-')}.qcow2`;
      const f = make(t.dir, name);
      const before = sha256(f);
      const h = await open(name);
      const plan = await service.call('repair.plan', { handle: h, mode: 'all' });
      expect(plan.steps.length).toBeGreaterThan(0);
      expect(plan.leaves).toEqual([]);
      const applied = await service.call('repair.apply', {
        handle: h,
        planId: plan.planId,
        target: { kind: 'copy', save: { kind: 'sibling' } },
      });
      expect(applied.name).toBe(name.replace('.qcow2', '.repaired.qcow2'));
      const v = await service.call('repair.verify', { handle: applied.handle });
      expect(v.ok).toBe(true);
      expect(v.qemu?.status).toBe(0);
      expect(v.guestData).toMatchObject({ differingBytes: 0, comparedBytes: 64 << 20 });
      expect(qemuCheck(join(t.dir, applied.name)).status).toBe(0);
      assertPatterns(join(t.dir, applied.name));
      expect(sha256(f)).toBe(before);
    },
  );

  it('in place with a journal: clean, guest data equal to before, then undone byte for byte', async () => {
    const f = makeRefcountErrors(t.dir, 'inplace.qcow2');
    const original = readFileSync(f);
    const h = await open('inplace.qcow2');
    const plan = await service.call('repair.plan', { handle: h, mode: 'all' });
    const applied = await service.call('repair.apply', {
      handle: h,
      planId: plan.planId,
      target: { kind: 'inPlace', journal: true },
    });
    expect(applied.handle).toBe(h);
    expect(applied.journal).toMatch(/^inplace\.qcow2\.repair-journal-/);
    expect(qemuCheck(f).status).toBe(0);
    const v = await service.call('repair.verify', { handle: h });
    expect(v.ok).toBe(true);
    expect(v.guestData?.differingBytes).toBe(0);
    expect(v.guestData?.detail).toContain('read the same before and after');
    await service.call('check.run', { handle: h });
    const html = await service.call('report.export', { handle: h, format: 'html', save: { kind: 'inline' } });
    const text = new TextDecoder().decode(html.bytes);
    expect(text).toContain('After the repair: Clean');
    expect(text).toContain('Before the repair: Damaged');
    const u = await service.call('repair.undo', { handle: h });
    expect(u.ok).toBe(true);
    expect(readFileSync(f).equals(original)).toBe(true);
  });

  it('a plan that loses guest data says which range: an L2 entry that lost its offset (COPIED kept)', async () => {
    const f = join(t.dir, 'lost-entry.qcow2');
    createQcow2(f, '16M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    const l2 = Number(readU64(f, Number(readU64(f, 40))) & 0x00fffffffffffe00n);
    const entry = readU64(f, l2 + 8);
    patchU64(f, l2 + 8, entry & ~0x00fffffffffffe00n); // guest 64 KiB..128 KiB now reads as unallocated
    const h = await open('lost-entry.qcow2');
    const plan = await service.call('repair.plan', { handle: h, mode: 'all' });
    expect(plan.loses).toEqual({ ranges: [{ start: 65536, length: 65536 }], rangesMore: 0, unplacedBytes: 0 });
    // An entry redirected onto another data cluster (COPIED kept): the cluster it pointed at is leaked and
    // freed, and which guest range held it nobody can tell; both entries carry COPIED, so which of the two
    // ranges owns the shared cluster cannot be told either, and both are named.
    makeRefcountErrors(t.dir, 'loses-unplaced.qcow2');
    const p2 = await service.call('repair.plan', { handle: await open('loses-unplaced.qcow2'), mode: 'all' });
    expect(p2.loses).toEqual({ ranges: [{ start: 0, length: 131072 }], rangesMore: 0, unplacedBytes: 65536 });
    makeLeaks(t.dir, 'loses-nothing.qcow2');
    const p3 = await service.call('repair.plan', { handle: await open('loses-nothing.qcow2'), mode: 'all' });
    expect(p3.loses).toEqual({ ranges: [], rangesMore: 0, unplacedBytes: 0 });
  });

  it('refuses a plan made before the image changed', async () => {
    const f = makeLeaks(t.dir, 'stale.qcow2');
    const h = await open('stale.qcow2');
    const plan = await service.call('repair.plan', { handle: h, mode: 'leaks' });
    patchU64(f, 0x40000 + 33 * 8, 0);
    const err = await service
      .call('repair.apply', { handle: h, planId: plan.planId, target: { kind: 'inPlace' } })
      .catch((e) => e);
    expect((err as ContractError).code).toBe('busy');
    expect((err as ContractError).message).toContain('changed since the plan was made');
  });
});

describe('report.export and image.strip', () => {
  it('saves reports next to the image (never overwriting) or inline, and a stripped copy QEMU judges the same', async () => {
    const f = makeRefcountErrors(t.dir, 'share.qcow2');
    const h = await open('share.qcow2');
    const a = await service.call('report.export', { handle: h, format: 'html', save: { kind: 'sibling' } });
    const b = await service.call('report.export', { handle: h, format: 'html', save: { kind: 'sibling' } });
    expect([a.name, b.name]).toEqual(['share.report.html', 'share-2.report.html']);
    expect(readFileSync(join(t.dir, a.name), 'utf8')).toContain('data-verdict="corrupt"');
    const j = await service.call('report.export', { handle: h, format: 'json', save: { kind: 'inline' } });
    expect(JSON.parse(new TextDecoder().decode(j.bytes)).verdict.word).toBe('corrupt');
    const s = await service.call('image.strip', { handle: h, what: [], save: { kind: 'sibling' } });
    expect(s.name).toBe('share.stripped.qcow2');
    const strippedCheck = qemuCheck(join(t.dir, s.name));
    const origCheck = qemuCheck(f);
    expect(strippedCheck.status).toBe(origCheck.status);
    expect({ ...strippedCheck.json, filename: '' }).toEqual({ ...origCheck.json, filename: '' });
    const inline = await service.call('image.strip', { handle: h, what: [], save: { kind: 'inline' } });
    expect(inline.size).toBe(readFileSync(f).length);
    copyFileSync(f, join(t.dir, 'x.qcow2'));
    expect(existsSync(join(t.dir, 'share.stripped.qcow2'))).toBe(true);
  });
});
