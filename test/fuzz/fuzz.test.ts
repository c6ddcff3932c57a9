// Seeded fuzzing of everything that reads an image: valid images made by qemu-img/qemu-io are
// mutated (header fields, extensions, L1/L2/refcount tables, snapshot table, bitmap directory and
// tables, LUKS header; boundary values, bit flips, zeroed or duplicated clusters, truncation) and
// each case runs open + info (JSON and human) + reading the guest disk (and a snapshot) + map + the
// checker, in-process on read-only in-memory files. Every failure must be one of the engine's typed
// errors; a case must not hang; memory must stay bounded. Deterministic: fixed seeds, fixed counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryIO } from '../../engine/io/memory-io.js';
import type { PositionalIO } from '../../engine/io/positional-io.js';
import { CancelledError, Qcow2FormatError, UnreadableError } from '../../engine/base/errors.js';
import { openChain } from '../../engine/image/backing-chain.js';
import { GuestReader } from '../../engine/image/guest-reader.js';
import { formatJson, mapEntries } from '../../engine/image/map.js';
import { qcow2ImageInfo, rawImageInfo } from '../../engine/image/info.js';
import { renderInfoHuman, renderInfoJson } from '../../engine/report/info-render.js';
import { checkImage, openForCheck } from '../../engine/check/index.js';
import { createQcow2, qemuImg, qemuIo, tempDir } from '../helpers/qemu.js';
import { createLuks } from '../info/helpers.js';
import { findTargets, mutateOnce, prng, type Targets } from './mutate.js';

const t = tempDir('q2d-fuzz-');
afterAll(t.cleanup);

/** Guest bytes read per case at most (a mutated size can claim petabytes). */
const GUEST_BYTES_PER_CASE = 4 * 1024 * 1024;
const READ_CHUNK = 512 * 1024;
/** A case taking longer than this is a hang (real cases take milliseconds). */
const CASE_TIME_LIMIT_MS = 20_000;
/** Heap + array buffers may grow at most this much over the run. */
const MEMORY_GROWTH_LIMIT = 1024 * 1024 * 1024;

interface Seed {
  name: string;
  /** Files by the name the top image refers to them; the top image is TOP. */
  files: Map<string, Uint8Array>;
  cases: number;
  targets?: Targets;
  baseTargets?: Targets;
}

const TOP = 'top.qcow2';
/** Deeper runs by hand: FUZZ_SEED=<n> picks other mutations, FUZZ_SCALE=<k> runs k times the cases. */
const SEED_BASE = Number(process.env.FUZZ_SEED ?? 0x9e3779b9) >>> 0;
const SCALE = Math.max(0.01, Number(process.env.FUZZ_SCALE ?? 1));
const SEEDS: Seed[] = [];

function seedFrom(name: string, cases: number, make: (top: string) => void, others: string[] = []): void {
  const dir = join(t.dir, name);
  mkdirSync(dir, { recursive: true });
  const top = join(dir, TOP);
  make(top);
  const files = new Map<string, Uint8Array>([[TOP, new Uint8Array(readFileSync(top))]]);
  for (const o of others) files.set(o, new Uint8Array(readFileSync(join(dir, o))));
  SEEDS.push({ name, files, cases });
}

beforeAll(() => {
  seedFrom('v3-64k', 400, (p) => {
    createQcow2(p, '4M');
    qemuIo(p, ['write -P 1 0 64k', 'write -z 128k 64k', 'write -c -P 2 256k 64k', 'write -P 3 3M 4k']);
  });
  seedFrom('v2-snapshot', 350, (p) => {
    createQcow2(p, '2M', { compat: '0.10', cluster_size: '4k' });
    qemuIo(p, ['write -P 1 0 64k']);
    qemuImg('snapshot', '-c', 'one', p);
    qemuIo(p, ['write -P 2 32k 64k']);
  });
  seedFrom('extl2', 350, (p) => {
    createQcow2(p, '2M', { extended_l2: true, cluster_size: '16k' });
    qemuIo(p, ['write -P 1 2k 2k', 'write -z 64k 16k', 'write -P 4 100k 9k']);
  });
  seedFrom('snapshots-4k', 400, (p) => {
    createQcow2(p, '2M', { cluster_size: '4k', refcount_bits: 2 });
    qemuIo(p, ['write -P 1 0 32k']);
    qemuImg('snapshot', '-c', 's1', p);
    qemuIo(p, ['write -P 2 8k 16k']);
    qemuImg('snapshot', '-c', 's2', p);
  });
  seedFrom('zstd-512', 300, (p) => {
    createQcow2(p, '1M', { cluster_size: 512, compression_type: 'zstd', refcount_bits: 64 });
    qemuIo(p, ['write -c -P 5 0 4k', 'write -P 6 8k 2k']);
  });
  seedFrom('bitmaps', 350, (p) => {
    createQcow2(p, '4M', { cluster_size: '4k' });
    qemuImg('bitmap', '--add', p, 'b0');
    qemuImg('bitmap', '--add', '-g', '8k', p, 'b1');
    qemuIo(p, ['write -P 7 0 256k']);
  });
  seedFrom(
    'backing',
    250,
    (p) => {
      const base = join(p, '..', 'base.qcow2');
      createQcow2(base, '2M', { cluster_size: '4k' });
      qemuIo(base, ['write -P 8 0 64k']);
      createQcow2(p, '2M', { cluster_size: '4k' }, { file: 'base.qcow2', format: 'qcow2' });
      qemuIo(p, ['write -P 9 16k 8k']);
    },
    ['base.qcow2'],
  );
  seedFrom('luks', 150, (p) => createLuks(p, '1M'));
  seedFrom('datafile', 150, (p) => {
    createQcow2(p, '2M', { cluster_size: '4k', data_file: join(p, '..', 'data.raw'), data_file_raw: true });
    qemuIo(p, ['write -P 10 0 64k', 'write -z 64k 64k']);
  });
  // The data file is recorded by absolute path.
  const df = SEEDS.find((s) => s.name === 'datafile')!;
  df.files.set(join(t.dir, 'datafile', 'data.raw'), new Uint8Array(readFileSync(join(t.dir, 'datafile', 'data.raw'))));
  for (const s of SEEDS) {
    s.targets = findTargets(s.files.get(TOP)!);
    const base = s.files.get('base.qcow2');
    if (base) s.baseTargets = findTargets(base);
  }
});

const isTyped = (e: unknown): boolean =>
  e instanceof Qcow2FormatError || e instanceof UnreadableError || e instanceof CancelledError;

interface Outcome {
  /** Untyped errors: what the test fails on. */
  problems: string[];
  infoOk: boolean;
  readOk: boolean;
  mapOk: boolean;
  checkOk: boolean;
}

/** Everything a user can do to an image without writing, on one (possibly damaged) set of files. */
async function exercise(files: Map<string, Uint8Array>): Promise<Outcome> {
  const out: Outcome = { problems: [], infoOk: false, readOk: false, mapOk: false, checkOk: false };
  const openFile = async (p: string): Promise<PositionalIO> => {
    const b = files.get(p);
    if (!b) throw Object.assign(new Error(`ENOENT: no such file '${p}'`), { code: 'ENOENT' });
    return new MemoryIO(b, p, true); // read-only: any write attempt fails the case
  };
  const stage = async (name: string, fn: () => Promise<void>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (e) {
      if (!isTyped(e)) out.problems.push(`${name}: ${e instanceof Error ? e.stack : String(e)}`);
      return false;
    }
  };

  out.infoOk = await stage('info', async () => {
    const chain = await openChain(TOP, { noBacking: true, noDataFile: true, openFile });
    try {
      const top = chain.top;
      const info = top.image
        ? await qcow2ImageInfo(top.image, { filename: TOP })
        : await rawImageInfo(top.io, { filename: TOP });
      JSON.parse(renderInfoJson(info));
      renderInfoHuman(info);
    } finally {
      await chain.close();
    }
  });

  out.readOk = await stage('read', async () => {
    const chain = await openChain(TOP, { openFile });
    try {
      const reader = await GuestReader.open(chain);
      const end = Math.min(reader.size, GUEST_BYTES_PER_CASE);
      for (let off = 0; off < end; off += READ_CHUNK) await reader.read(off, Math.min(READ_CHUNK, end - off));
      const img = chain.top.image;
      if (img && img.header.nbSnapshots > 0) {
        const { entries } = await img.readSnapshots();
        const sn = await GuestReader.open(chain, { snapshot: entries[0]!.id });
        await sn.read(0, Math.min(sn.size, READ_CHUNK));
      }
    } finally {
      await chain.close();
    }
  });

  out.mapOk = await stage('map', async () => {
    const chain = await openChain(TOP, { openFile });
    try {
      formatJson(await mapEntries(chain));
    } finally {
      await chain.close();
    }
  });

  out.checkOk = await stage('check', async () => {
    const image = await openForCheck(await openFile(TOP));
    await checkImage(image);
  });
  return out;
}

function withTimeLimit<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

const memory = (): number => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

describe('fuzzing open, info, guest reads and the checker', () => {
  it('the unmutated seeds open, report, read and check cleanly', async () => {
    for (const s of SEEDS) {
      const o = await exercise(s.files);
      expect(o.problems, s.name).toEqual([]);
      expect(o.infoOk, `${s.name} info`).toBe(true);
      expect(o.checkOk, `${s.name} check`).toBe(true);
      if (s.name !== 'luks') expect(o.readOk, `${s.name} read`).toBe(true);
      expect(o.mapOk, `${s.name} map`).toBe(true);
    }
  });

  it(
    'thousands of seeded mutations: only typed errors, no hang, bounded memory',
    async () => {
      const base = memory();
      let peak = base;
      const failures: string[] = [];
      const tally = { cases: 0, infoOk: 0, readOk: 0, mapOk: 0, checkOk: 0, refusedAll: 0 };
      for (const [si, s] of SEEDS.entries()) {
        const rand = prng(SEED_BASE ^ (si * 7919));
        const top = s.files.get(TOP)!;
        for (let c = 0; c < Math.round(s.cases * SCALE) && failures.length < 5; c++) {
          let bytes: Uint8Array = top.slice();
          const whats: string[] = [];
          const n = 1 + Math.floor(rand() * 3);
          for (let m = 0; m < n; m++) {
            const r = mutateOnce(rand, bytes, s.targets!);
            bytes = r.bytes;
            whats.push(r.what);
          }
          const files = new Map(s.files);
          files.set(TOP, bytes);
          // Now and then the backing file is damaged instead (the top stays as mutated).
          if (s.files.has('base.qcow2') && rand() < 0.25) {
            const base = s.files.get('base.qcow2')!.slice();
            const r = mutateOnce(rand, base, s.baseTargets!);
            files.set('base.qcow2', r.bytes);
            whats.push(`base: ${r.what}`);
          }
          const label = `${s.name} case ${c} [${whats.join('; ')}]`;
          let o: Outcome;
          try {
            o = await withTimeLimit(exercise(files), CASE_TIME_LIMIT_MS, label);
          } catch (e) {
            failures.push(`${label}: ${(e as Error).message}`);
            continue;
          }
          tally.cases++;
          if (o.infoOk) tally.infoOk++;
          if (o.readOk) tally.readOk++;
          if (o.mapOk) tally.mapOk++;
          if (o.checkOk) tally.checkOk++;
          if (!o.infoOk && !o.readOk && !o.mapOk && !o.checkOk) tally.refusedAll++;
          for (const p of o.problems) failures.push(`${label}: ${p}`);
          if (c % 25 === 0) {
            peak = Math.max(peak, memory());
            if (peak - base > MEMORY_GROWTH_LIMIT)
              failures.push(`${label}: memory grew by ${Math.round((peak - base) / 2 ** 20)} MiB`);
          }
        }
      }
      expect(failures.slice(0, 5)).toEqual([]);
      // Not hollow: mutated images are still opened, read and checked most of the time, and some are refused.
      expect(tally.cases).toBeGreaterThan(2500 * Math.min(1, SCALE));
      expect(tally.infoOk).toBeGreaterThan(tally.cases / 3);
      expect(tally.readOk).toBeGreaterThan(tally.cases / 4);
      expect(tally.mapOk).toBeGreaterThan(tally.cases / 4);
      expect(tally.checkOk).toBeGreaterThan(tally.cases / 3);
      expect(tally.refusedAll).toBeGreaterThan(50);
    },
    300_000 * Math.max(1, SCALE),
  ); // the whole run; each case has its own hang limit
});
