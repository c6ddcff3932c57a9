// The wizard's salvage path through the service, as the renderer calls it: an image whose header
// is destroyed is refused by image.open with a salvage source; salvage.scan previews and
// salvage.export writes a qcow2 that repair.verify (our check + qemu-img check) finds clean; a
// zeroed L1 table makes salvage.assess advise salvage before any repair.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Service } from '../../engine/service/service.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { ContractError, toWireError } from '../../engine/contract/errors.js';
import { qemuCheck, sha256, tempDir } from '../helpers/qemu.js';
import { assertPatterns, makeLeaks } from './images.js';
import { makeHeaderZeroed, makeL1Unreadable, makeL1Zeroed } from './salvage-images.js';

const t = tempDir('q2d-wizard-salvage-svc-');
let service: Service;

beforeAll(async () => {
  service = new Service(await createServeHost(t.dir));
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
});

/** The refusal as the renderer receives it (through the wire codec). */
async function refusal(name: string): Promise<ContractError> {
  const e = await service.call('image.open', { ref: { kind: 'root', path: name } }).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeDefined();
  return ContractError.fromWire(toWireError(e));
}

describe('wizard salvage path (service)', () => {
  it('a destroyed header: image.open refuses with a salvage source; scan, export, verify', async () => {
    const file = makeHeaderZeroed(t.dir);
    const before = sha256(file);
    const e = await refusal('header-zeroed.qcow2');
    expect(e.code).toBe('format');
    expect(e.salvageSource).toMatch(/^[A-Za-z0-9_-]{8,64}$/);
    expect(e.salvageName).toBe('header-zeroed.qcow2'); // the name under the served root, not a host path
    const source = e.salvageSource!;

    const scan = await service.call('salvage.scan', { handle: source });
    expect(scan.preview?.header).not.toBe('intact');
    expect(scan.preview?.bytes.lost).toBe(0);
    expect(scan.preview?.bytes.recovered).toBe(192 * 1024);

    const out = await service.call('salvage.export', { handle: source, save: { kind: 'sibling' } });
    expect(out.name).toBe('header-zeroed.salvaged.qcow2'); // relative to the served root, no host path
    expect(out.reportName).toBe('header-zeroed.salvaged.qcow2.report.txt');
    expect(readFileSync(join(t.dir, out.reportName!), 'utf8')).toContain('nothing lost');
    const salvaged = join(t.dir, out.name);
    expect(qemuCheck(salvaged).status).toBe(0);
    assertPatterns(salvaged);
    expect(out.handle).toBeDefined();
    const v = await service.call('repair.verify', { handle: out.handle! });
    expect(v.ok).toBe(true);
    expect(v.qemu?.summary).toContain('No errors were found on the image.');
    expect(sha256(file)).toBe(before);
  });

  it('an unreadable L1 table: image.open refuses with a salvage source; a raw export holds every pattern', async () => {
    const file = makeL1Unreadable(t.dir);
    const before = sha256(file);
    const e = await refusal('l1-unreadable.qcow2');
    expect(e.code).toBe('format');
    expect(e.message).toContain('L1');
    const out = await service.call('salvage.export', {
      handle: e.salvageSource!,
      save: { kind: 'sibling' },
      format: 'raw',
    });
    expect(out.name).toBe('l1-unreadable.salvaged.raw');
    expect(out.handle).toBeUndefined(); // a raw disk has no tables to verify
    expect(out.size).toBe(64 * 1024 * 1024);
    expect(out.preview?.bytes.lost).toBe(0);
    assertPatterns(join(t.dir, out.name), 'raw');
    expect(sha256(file)).toBe(before);
  });

  it('an unknown salvage source is refused as not-found', async () => {
    await expect(service.call('salvage.scan', { handle: 'nosuchhandle123' })).rejects.toMatchObject({
      code: 'not-found',
    });
  });

  it('a zeroed L1 table: the check sees only leaks, salvage.assess warns, salvage recovers every pattern', async () => {
    const file = makeL1Zeroed(t.dir);
    const o = await service.call('image.open', { ref: { kind: 'root', path: 'l1-zeroed.qcow2' } });
    const c = await service.call('check.run', { handle: o.handle });
    expect(c.counters.leaks).toBeGreaterThan(0);
    const a = await service.call('salvage.assess', { handle: o.handle });
    expect(a.orphanTables).toBe(1);
    expect(a.orphanData).toBe(3);
    expect(a.advice).toContain('"Repair leaks" keeps these clusters');
    const out = await service.call('salvage.export', { handle: o.handle, save: { kind: 'sibling' } });
    expect(out.preview?.bytes.recovered).toBe(192 * 1024);
    assertPatterns(join(t.dir, out.name));
    expect(existsSync(file)).toBe(true);
  });

  it('plain leaks: salvage.assess gives no advice', async () => {
    makeLeaks(t.dir);
    const o = await service.call('image.open', { ref: { kind: 'root', path: 'leaks.qcow2' } });
    await service.call('check.run', { handle: o.handle });
    const a = await service.call('salvage.assess', { handle: o.handle });
    expect(a.orphanTables).toBe(0);
    expect(a.advice).toBeUndefined();
  });
});
