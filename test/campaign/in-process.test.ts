// The campaign runs our CLI inside its workers (campaign/in-process.ts) to save a Node start per
// command; the verdicts must be the ones the launcher, run as a process per command, gives.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBases } from '../../campaign/bases.js';
import { makeCase } from '../../campaign/cases.js';
import { inProcessCli } from '../../campaign/in-process.js';
import { judgeCase } from '../../campaign/judge.js';
import { prng } from '../../campaign/prng.js';
import { ours } from '../../campaign/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'q2d-campaign-inproc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('campaign CLI in-process', () => {
  it('judges cases exactly as the launcher run per command does', async () => {
    const seed = 4242;
    const bases = await makeBases(dir, prng(seed), ['c4096-r16-snap', 'c65536-r8']);
    const files = new Map(bases.map((b) => [b, new Uint8Array(readFileSync(b.image))]));
    const inProcess = await inProcessCli();
    const scratch = { images: join(dir, 'case'), reads: join(dir, 'read') };
    for (let i = 0; i < 4; i++) {
      const c = makeCase(seed, i, bases, files);
      const spawned = await judgeCase(ours, c.base, c, scratch, i);
      const inside = await judgeCase(inProcess, c.base, c, scratch, i);
      expect(inside, `case ${i}: ${c.kind} ${c.what}`).toEqual(spawned);
    }
  }, 300_000);
});
