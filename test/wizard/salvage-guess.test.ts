// The service's salvage results never call a guess a success: an L1-zeroed image whose tables'
// places nothing records is assessed, scanned and exported with "placed by guess" words, status 4
// and per-range placement; only a salvage whose every position is certain says "nothing lost".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Service } from '../../engine/service/service.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { tempDir } from '../helpers/qemu.js';
import { makeL1Zeroed, makeL1ZeroedScattered } from './salvage-images.js';

const t = tempDir('q2d-wizard-salvage-guess-');
let service: Service;

beforeAll(async () => {
  service = new Service(await createServeHost(t.dir));
});
afterAll(async () => {
  await service.dispose();
  t.cleanup();
});

async function open(file: string): Promise<string> {
  const o = await service.call('image.open', { ref: { kind: 'root', path: basename(file) } });
  return o.handle;
}

describe('salvage wording in the service results', () => {
  it('zeroed L1, data at 0, 37 and 200 MiB: assess, scan and export say "placed by guess", never "nothing lost"', async () => {
    const h = await open(makeL1ZeroedScattered(t.dir));
    await service.call('check.run', { handle: h });
    const a = await service.call('salvage.assess', { handle: h });
    expect(a.orphanTables).toBe(6);
    expect(a.advice).toMatch(/only by guess/);

    const scan = await service.call('salvage.scan', { handle: h });
    const p = scan.preview!;
    expect(p.outcome.exitCode).toBe(4);
    expect(p.outcome.words).toMatch(/^recovered; 8\.06 MiB placed by guess, confidence 0\.4/);
    expect(p.bytes.guessed).toBe(p.bytes.recovered);
    expect(p.guessedConfidence).toBe(0.4);
    expect(p.placement).toEqual([
      {
        start: 0,
        end: 12 * 1024 * 1024,
        how: 'by-guess',
        confidence: 0.4,
        detail: 'host order of the L2 tables in the file',
      },
    ]);
    expect(scan.summary).toMatch(/Outcome: recovered; 8\.06 MiB placed by guess/);
    expect(scan.summary).not.toMatch(/nothing lost/);

    const out = await service.call('salvage.export', { handle: h, save: { kind: 'sibling' }, format: 'raw' });
    expect(out.preview?.outcome.exitCode).toBe(4);
    const report = readFileSync(join(t.dir, out.reportName!), 'utf8');
    expect(report).toMatch(/BY GUESS \(confidence 0\.4\)/);
    expect(report).not.toMatch(/nothing lost/);
  });

  it('a zeroed L1 whose one table can only go in the one slot: certain, "nothing lost", status 0', async () => {
    const h = await open(makeL1Zeroed(t.dir));
    const scan = await service.call('salvage.scan', { handle: h });
    const p = scan.preview!;
    expect(p.outcome).toEqual({
      exitCode: 0,
      words: "recovered; every recovered byte's position is certain; nothing lost",
    });
    expect(p.placement.map((r) => r.how)).toEqual(['by-elimination']);
    expect(p.bytes.guessed).toBe(0);
  });
});
