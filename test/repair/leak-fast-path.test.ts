// The leak-only fast path (engine/repair/leak-plan.ts, leak-recheck.ts): on real images with leaked
// clusters nothing refers to and that read as zeros, the plan built from the checker's first pass
// equals the full planner's plan byte for byte, and the re-check that re-reads only the refcount
// blocks the repair wrote equals a full re-check. Everything else must go to the full planner.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CheckAnalysis, runCheckPasses } from '../../engine/check/analyze.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { openInputFile } from '../../engine/io/input-file.js';
import type { PositionalIO } from '../../engine/io/positional-io.js';
import { applyPlan } from '../../engine/repair/apply.js';
import { repairFile } from '../../engine/repair/index.js';
import { planLeaksFromCheck } from '../../engine/repair/leak-plan.js';
import { recheckLeakRepair } from '../../engine/repair/leak-recheck.js';
import { planRepair } from '../../engine/repair/planner.js';
import { SCENARIOS } from '../check/scenarios.js';
import { createQcow2, patchU16, qemuCheck, qemuImg, qemuIo, readU64, run, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-leak-fast-');
afterAll(t.cleanup);
const at = (name: string): string => join(t.dir, name);
const tableOf = (e: bigint): number => Number(e & 0x00fffffffffffe00n);

async function analyze(io: PositionalIO): Promise<CheckAnalysis> {
  return runCheckPasses(await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true }));
}

/** Every field of an analysis that the report, the verdict or the planner reads. */
function essence(a: CheckAnalysis) {
  return {
    clusterSize: a.clusterSize,
    fileSize: a.fileSize,
    fileClusters: a.fileClusters,
    nbClusters: a.nbClusters,
    references: Buffer.from(a.references).toString('base64'),
    refcountMax: a.refcountMax,
    counters: a.counters,
    rebuild: a.rebuild,
    findings: a.findings,
    findingsDropped: a.findingsDropped,
    snapshots: a.snapshots,
    snapshotTableSize: a.snapshotTableSize,
    bitmaps: a.bitmaps,
    highestCluster: a.highestCluster,
    failed: a.failed,
    anomalies: a.anomalies,
    messages: a.messages,
    entriesVisited: a.entriesVisited,
  };
}

/** Zero entry `index` of the L2 table the active L1's slot `slot` points at (its data cluster leaks). */
function zeroL2Entry(f: string, slot: number, index: number): void {
  const l2 = tableOf(readU64(f, Number(readU64(f, 40)) + 8 * slot));
  expect(l2).toBeGreaterThan(0);
  run('node', [
    '-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(f)},'r+');fs.writeSync(fd,Buffer.alloc(8),0,8,${l2 + 8 * index})`,
  ]);
}

/** Images whose only damage is leaked, zero-filled, unreferenced clusters. */
const LEAK_ONLY: Array<{ name: string; build: (f: string) => void }> = [
  {
    name: 'metadata-preallocated, five leaks across L2 tables',
    build: (f) => {
      createQcow2(f, '2G', { cluster_size: 65536, preallocation: 'metadata' });
      for (let i = 0; i < 5; i++) zeroL2Entry(f, i % 4, 1 + 17 * i);
    },
  },
  {
    name: 'data and a snapshot, zeros written after it, two entries zeroed',
    build: (f) => {
      createQcow2(f, '64M', { cluster_size: 4096 });
      qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 8M 64k']);
      qemuImg('snapshot', '-c', 's1', f);
      qemuIo(f, ['write -P 0 16M 16k', 'write -P 0x33 16M 4k']);
      // An L2 table of 4 KiB clusters spans 2 MiB: 16 MiB is slot 8; entries 1..3 hold zeros
      // (entry 3 maps the last cluster of the file: it stays, so the image end does not move).
      zeroL2Entry(f, 8, 1);
      zeroL2Entry(f, 8, 2);
    },
  },
  {
    name: '64-bit refcounts, metadata-preallocated, three leaks',
    build: (f) => {
      createQcow2(f, '512M', { cluster_size: 65536, refcount_bits: 64, preallocation: 'metadata' });
      zeroL2Entry(f, 0, 3);
      zeroL2Entry(f, 0, 4);
      zeroL2Entry(f, 0, 100);
    },
  },
  {
    name: '1-bit refcounts, metadata-preallocated, two leaks',
    build: (f) => {
      createQcow2(f, '256M', { cluster_size: 65536, refcount_bits: 1, preallocation: 'metadata' });
      zeroL2Entry(f, 0, 7);
      zeroL2Entry(f, 0, 2000);
    },
  },
];

describe('leak-only images: the plan from the first pass equals the full planner', () => {
  let n = 0;
  for (const img of LEAK_ONLY)
    for (const mode of ['leaks', 'all'] as const)
      it(`${img.name}, -r ${mode}`, async () => {
        const f = at(`leak-only-${n++}.qcow2`);
        img.build(f);
        expect(qemuCheck(f).status).toBe(3);
        const io = await openInputFile(f, { write: true });
        try {
          const before = await analyze(io);
          const fast = await planLeaksFromCheck(io, before, mode, f);
          expect(fast).toBeDefined();
          const full = await planRepair(io, { mode, name: f, anomalies: before.anomalies });
          expect(fast).toEqual(full);
          expect(fast!.leaksFixed).toBe(before.counters.leaks);

          await applyPlan(io, fast!);
          const quick = await recheckLeakRepair(io, before, fast!);
          expect(quick).toBeDefined();
          expect(essence(quick!)).toEqual(essence(await analyze(io)));
        } finally {
          await io.close();
        }
        expect(qemuCheck(f).status).toBe(0);
      });

  it('the repair as the CLI runs it: same outcome as QEMU, re-check equal to a full one', async () => {
    const f = at('repair-file.qcow2');
    LEAK_ONLY[0]!.build(f);
    const q = at('repair-file-qemu.qcow2');
    run('cp', ['--sparse=always', f, q]);
    const out = await repairFile({ image: f, mode: 'leaks', journal: false });
    expect(out.after?.counters.leaks).toBe(0);
    const io = await openInputFile(f);
    try {
      expect(essence(out.after!)).toEqual(essence(await analyze(io)));
    } finally {
      await io.close();
    }
    expect(qemuCheck(q, 'leaks').json?.['leaks-fixed']).toBe(out.plan.leaksFixed);
    expect(qemuCheck(f).status).toBe(0);
  });
});

describe('what goes to the full planner', () => {
  it('a leaked cluster that holds data (kept by -r leaks: the full planner decides)', async () => {
    const f = at('leaked-data.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x5a 0 128k']);
    zeroL2Entry(f, 0, 1);
    const io = await openInputFile(f);
    try {
      const before = await analyze(io);
      expect(before.counters.leaks).toBe(1);
      expect(await planLeaksFromCheck(io, before, 'leaks', f)).toBeUndefined();
    } finally {
      await io.close();
    }
  });

  it('the last used cluster leaked: the re-check is a full one (the image end moves)', async () => {
    const f = at('leaked-last.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x5a 0 64k', 'write -P 0 1M 64k']);
    const l2 = tableOf(readU64(f, Number(readU64(f, 40))));
    const last = tableOf(readU64(f, l2 + 8 * 16)) / 65536;
    zeroL2Entry(f, 0, 16);
    const io = await openInputFile(f, { write: true });
    try {
      const before = await analyze(io);
      expect(before.highestCluster).toBe(last);
      const plan = await planLeaksFromCheck(io, before, 'leaks', f);
      expect(plan).toBeDefined();
      await applyPlan(io, plan!);
      expect(await recheckLeakRepair(io, before, plan!)).toBeUndefined();
    } finally {
      await io.close();
    }
    expect(qemuCheck(f).status).toBe(0);
  });

  it('a refcount raised on a referenced cluster (a leak with references) is not a fast one', async () => {
    const f = at('leak-referenced.qcow2');
    createQcow2(f, '64M', { cluster_size: 65536 });
    qemuIo(f, ['write -P 0x5a 0 64k']);
    const data = tableOf(readU64(f, tableOf(readU64(f, Number(readU64(f, 40)))))) / 65536;
    const rb = tableOf(readU64(f, Number(readU64(f, 48))));
    patchU16(f, rb + 2 * data, 2);
    const io = await openInputFile(f);
    try {
      const before = await analyze(io);
      expect(before.counters.leaks).toBe(1);
      expect(await planLeaksFromCheck(io, before, 'all', f)).toBeUndefined();
    } finally {
      await io.close();
    }
  });

  // Each of them has a corruption, another anomaly, or leaked clusters that hold data.
  it('declines every corruption scenario of the checker tests (and would equal the full planner if not)', async () => {
    const fastOnes: string[] = [];
    for (const s of SCENARIOS) {
      const dir = at(`scenario-${s.name}`);
      mkdirSync(dir, { recursive: true });
      const f = s.build(dir);
      const io = await openInputFile(f);
      try {
        const before = await analyze(io);
        for (const mode of ['leaks', 'all'] as const) {
          const fast = await planLeaksFromCheck(io, before, mode, f);
          if (!fast) continue;
          fastOnes.push(`${s.name} -r ${mode}`);
          expect(fast, s.name).toEqual(await planRepair(io, { mode, name: f, anomalies: before.anomalies }));
        }
      } finally {
        await io.close();
      }
    }
    expect(fastOnes).toEqual([]);
  }, 300_000);
});
