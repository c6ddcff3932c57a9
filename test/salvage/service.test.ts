// The salvage requests of the service (what the wizard's "salvage" choice calls), as the renderer
// calls them, on a served root: the image is never modified, the export lands next to it and
// reads back (qemu-img) as the undamaged disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Service } from '../../engine/service/service.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { createQcow2, qemuCheck, qemuImg, qemuIo, readU64, sha256, tempDir, writeBytes } from '../helpers/qemu.js';

const t = tempDir('q2d-salvage-svc-');
let service: Service;

beforeAll(async () => {
  service = new Service(await createServeHost(t.dir));
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
});

describe('salvage.scan and salvage.export', () => {
  it('scans an image whose L1 table was zeroed and exports its disk next to it', async () => {
    const f = join(t.dir, 'lost-l1.qcow2');
    createQcow2(f, '8M'); // 64 KiB clusters: one L2 table, so its place is certain
    qemuIo(f, ['write -P 0x31 0 64k', 'write -P 0x32 5M 12k']);
    qemuImg('convert', '-f', 'qcow2', '-O', 'raw', f, join(t.dir, 'want.raw'));
    writeBytes(f, Number(readU64(f, 40)), new Uint8Array(32));
    const before = sha256(f);
    expect(service.available()).toEqual(expect.arrayContaining(['salvage.scan', 'salvage.export']));
    const { handle } = await service.call('image.open', { ref: { kind: 'root', path: 'lost-l1.qcow2' } });
    const fractions: number[] = [];
    const scan = await service.call('salvage.scan', { handle }, { progress: (p) => fractions.push(p.fraction) });
    expect(scan.recoverable).toBe(128 * 1024); // two whole clusters
    expect(scan.lost).toBe(0);
    expect(scan.summary).toMatch(/^Salvage of lost-l1\.qcow2/);
    expect(scan.summary).not.toContain(t.dir); // no absolute paths to a browser
    expect(fractions.length).toBeGreaterThan(0);
    const out = await service.call('salvage.export', { handle, save: { kind: 'sibling' }, format: 'qcow2' });
    expect(out.name).toBe('lost-l1.salvaged.qcow2');
    const path = join(t.dir, out.name);
    expect(qemuCheck(path).status).toBe(0);
    qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path, join(t.dir, 'got.raw'));
    expect(readFileSync(join(t.dir, 'got.raw')).equals(readFileSync(join(t.dir, 'want.raw')))).toBe(true);
    expect(sha256(f)).toBe(before);
  });

  it('refuses an inline download of a disk, naming the field', async () => {
    const f = join(t.dir, 'small.qcow2');
    createQcow2(f, '1M');
    const { handle } = await service.call('image.open', { ref: { kind: 'root', path: 'small.qcow2' } });
    await expect(service.call('salvage.export', { handle, save: { kind: 'inline' } })).rejects.toMatchObject({
      code: 'invalid-argument',
      field: 'args.save.kind',
    });
    expect(existsSync(join(t.dir, 'small.salvaged.qcow2'))).toBe(false);
  });
});
