// The campaign's bookkeeping: the sparse truth and its chunked comparison agree sector for sector
// with a plain comparison of whole buffers, and --out resumes from the verdicts a run left behind.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CaseResult } from '../../campaign/judge.js';
import { appendOut, readOut } from '../../campaign/out-file.js';
import { matchFile, readTruth } from '../../campaign/truth.js';

const dir = mkdtempSync(join(tmpdir(), 'q2d-campaign-truth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function plainMask(truth: Uint8Array, got: Uint8Array): number[] {
  const out: number[] = [];
  for (let s = 0; s < truth.length; s += 512) {
    const e = s + 512;
    const t = truth.subarray(s, e);
    out.push(e > got.length ? (t.every((b) => b === 0) ? 1 : 0) : Buffer.compare(t, got.subarray(s, e)) === 0 ? 1 : 0);
  }
  return out;
}

describe('campaign truth', () => {
  it('matches sector by sector as a whole-buffer comparison does, past the end of a short reading too', () => {
    const size = 6 << 20; // more than one chunk
    const truth = new Uint8Array(size);
    for (const at of [0, 70_000, 4 << 20, size - 512]) truth.fill(0x5a, at, at + 3000);
    writeFileSync(join(dir, 't.raw'), truth);
    const t = readTruth(join(dir, 't.raw'));
    expect(t.size).toBe(size);
    const got = truth.slice(0, size - 100_000);
    got[70_001] = 1; // one changed byte in a data block
    got[2 << 20] = 9; // data where the truth has a hole
    writeFileSync(join(dir, 'g.raw'), got);
    const mask = Array.from(matchFile(t, join(dir, 'g.raw')));
    expect(mask).toEqual(plainMask(truth, got));
    expect(mask.filter((m) => m === 0).length).toBeGreaterThan(2); // the two changes and the data past the end
    expect(Array.from(matchFile(t, undefined)).every((m) => m === 0)).toBe(true);
  });
});

describe('campaign --out', () => {
  const r = (index: number): CaseResult => ({
    index,
    base: 'c65536-r16',
    kind: 'bitflip',
    what: 'x',
    qemuKeptBytes: 1,
    oursKeptBytes: 1,
    lostVsQemu: 0,
    falseClaims: [],
    refused: false,
    undetectable: false,
    exits: { check: 0, leaks: 0, all: 0, salvage: 0, qemuCheck: 0, qemuRepair: 0 },
    notes: [],
  });

  it('gives back the cases a run wrote, drops a line cut short, and refuses another seed', () => {
    const file = join(dir, 'out.jsonl');
    appendOut(file, 7, ['c512'], r(0));
    appendOut(file, 7, ['c512'], r(1));
    writeFileSync(file, `${readFileSync(file, 'utf8')}{"seed":7,"bas`);
    expect(readOut(file, 7, ['c512']).map((x) => x.index)).toEqual([0, 1]);
    appendOut(file, 7, ['c512'], r(2));
    expect(readOut(file, 7, ['c512'])).toEqual([r(0), r(1), r(2)]);
    expect(() => readOut(file, 8, ['c512'])).toThrow(/seed 7/);
  });
});
