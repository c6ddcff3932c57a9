// The crash lab run by the normal suite: a bounded campaign (every prefix of each workload's write
// log plus seeded subsets and torn writes per flush epoch) must find nothing on the ordered write
// path, and must find corruption when the ordering is dropped (a lab that cannot fail proves nothing).
import { describe, expect, it } from 'vitest';
import { recordWorkload, runCampaign } from '../../engine/lab/campaign.js';
import { labWorkloads } from '../../engine/lab/workloads.js';
import { RecordingIO } from '../../engine/io/recording-io.js';

const NAMES = labWorkloads().map((w) => w.name);

describe('crash-consistency campaign', () => {
  it('the workloads reach every path they are meant to exercise', async () => {
    const want: Record<string, string[]> = {
      allocate: ['l2_alloc_write', 'l1_update', 'cow_read', 'cluster_alloc'],
      discard: ['cluster_free'],
      compressed: ['write_compressed', 'l2_update_compressed', 'read_compressed'],
      'grow-l1': ['l1_grow_alloc_table', 'l1_grow_write_table', 'l1_grow_activate_table'],
      refblocks: ['refblock_alloc', 'refblock_alloc_write', 'refblock_alloc_hookup'],
      'grow-reftable': [
        'reftable_grow',
        'refblock_alloc_write_blocks',
        'refblock_alloc_write_table',
        'refblock_alloc_switch_table',
      ],
      snapshots: ['snapshot_write_table', 'snapshot_switch_table', 'l2_alloc_cow_read', 'cluster_free'],
      'lazy-refcounts': ['header_update'],
    };
    for (const wl of labWorkloads()) {
      const events: string[] = [];
      const orig = RecordingIO.prototype.event;
      RecordingIO.prototype.event = function (this: RecordingIO, name: string) {
        events.push(name);
        orig.call(this, name);
      };
      try {
        const rec = await recordWorkload(wl, 'ordered');
        expect(rec.log.length, wl.name).toBeGreaterThan(5);
        for (const e of want[wl.name] ?? []) expect(events, `${wl.name} announces ${e}`).toContain(e);
      } finally {
        RecordingIO.prototype.event = orig;
      }
    }
  });

  it('ordered write path: zero corruptions and zero data mismatches in every crash state', async () => {
    const reports = await runCampaign({
      ordering: 'ordered',
      seed: 1,
      subsetsPerEpoch: 12,
      tornPerEpoch: 6,
      continueEvery: 4,
    });
    expect(reports.map((r) => r.name)).toEqual(NAMES);
    let total = 0;
    for (const r of reports) {
      total += r.states;
      expect(r.failures, r.name).toEqual([]);
      expect(r.corruptions, r.name).toBe(0);
      expect(r.dataMismatches, r.name).toBe(0);
      expect(r.continueFailures, r.name).toBe(0);
      expect(r.continueTried, r.name).toBeGreaterThan(0);
      // Every prefix is a state, plus the random ones.
      expect(r.states, r.name).toBeGreaterThan(r.logLength);
    }
    expect(total).toBeGreaterThan(1500);
    // Crashes do leave leaks (allowed), and the lazy-refcount workload leaves dirty images that are repaired on open.
    expect(reports.some((r) => r.leaky > 0)).toBe(true);
    expect(reports.find((r) => r.name === 'lazy-refcounts')!.dirtyRepaired).toBeGreaterThan(0);
  }, 600_000);

  it('negative control: without ordering the same lab finds corruption in every workload', async () => {
    const reports = await runCampaign({
      ordering: 'unordered',
      seed: 1,
      subsetsPerEpoch: 8,
      tornPerEpoch: 4,
      continueEvery: 0,
    });
    for (const r of reports) expect(r.corruptions + r.dataMismatches, r.name).toBeGreaterThan(0);
  }, 600_000);
});
