// A fixed slice of the differential campaign (campaign/): real QEMU images with known guest content,
// damaged by seeded metadata damage, repaired and salvaged by us and repaired by qemu-img. Not a
// byte that qemu-img's repair keeps may be lost by ours. False claims must go to zero; until then the
// slice pins the exact cases that still make one (the README's campaign section says which kinds and
// why), so a new false claim fails the suite, and so does a fixed one until it is taken off the list.
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../../campaign/campaign.js';

/**
 * Cases of seed 20261207 that still make a false claim: none. A case that makes one fails this test
 * (fix it or pin it here with the reason).
 */
const OPEN_FALSE_CLAIMS: number[] = [];

describe('differential campaign, fixed slice', () => {
  it('loses no byte qemu-img keeps; false claims only in the known open cases (seed 20261207, 24 cases)', async () => {
    const results = await runCampaign(
      {
        budget: 900,
        seed: 20261207,
        cases: 24,
        jobs: 2,
        json: false,
        bases: ['c65536-r16', 'c4096-r16-snap', 'c512-r16', 'c65536-r16-comp'],
      },
      () => {},
    );
    expect(results.length).toBe(24);
    const lost = results.filter((r) => r.lostVsQemu > 0).map((r) => `${r.index} ${r.base} ${r.kind}: ${r.what}`);
    expect(lost).toEqual([]);
    const claims = results
      .filter((r) => r.falseClaims.length > 0)
      .map((r) => r.index)
      .sort((a, b) => a - b);
    expect(claims).toEqual(OPEN_FALSE_CLAIMS);
    // Ours keeps at least what qemu-img's repair keeps, summed over the slice.
    const kept = (k: 'qemuKeptBytes' | 'oursKeptBytes') => results.reduce((n, r) => n + r[k], 0);
    expect(kept('oursKeptBytes')).toBeGreaterThanOrEqual(kept('qemuKeptBytes'));
  }, 900_000);
});
