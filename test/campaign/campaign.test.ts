// A fixed slice of the differential campaign (campaign/): real QEMU images with known guest content,
// damaged by seeded metadata damage, repaired and salvaged by us and repaired by qemu-img. Not a
// byte that qemu-img's repair keeps may be lost by ours, and no claim (exit 0, "nothing lost",
// "leaks only") may be false against the ground truth. The long run is `npm run campaign`.
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../../campaign/campaign.js';

describe('differential campaign, fixed slice', () => {
  it('loses no byte qemu-img keeps and makes no false claim (seed 20261207, 24 cases)', async () => {
    const results = await runCampaign(
      {
        budget: 600,
        seed: 20261207,
        cases: 24,
        jobs: 2,
        json: false,
        bases: ['c65536-r16', 'c4096-r16-snap', 'c512-r16', 'c65536-r16-comp'],
      },
      () => {},
    );
    expect(results.length).toBe(24);
    const bad = results
      .filter((r) => r.lostVsQemu > 0 || r.falseClaims.length > 0)
      .map(
        (r) =>
          `${r.base} ${r.kind}: ${r.what}: ${[...r.falseClaims, r.lostVsQemu ? `${r.lostVsQemu} B lost` : ''].join('; ')}`,
      );
    expect(bad).toEqual([]);
  }, 600_000);
});
