// Salvage campaign: images with known data made by qemu-img/qemu-io (several cluster sizes,
// snapshots, compressed clusters in zlib and zstd, a backing chain), damaged in each way the
// salvage must survive at several places, salvaged, and measured against `qemu-img convert -O raw`
// of the undamaged image. `npm run bench -- salvage` prints the recovery table; the tests in
// test/salvage/ run the same campaign and assert on it.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { salvageImage } from '../../engine/salvage/salvage.js';
import type { SalvageReport } from '../../engine/salvage/types.js';

export const title = 'Salvage: guest bytes recovered per damage kind (against qemu-img convert of the undamaged image)';

export interface ImageSpec {
  name: string;
  clusterSize: number;
  size: string;
  compression?: 'zlib' | 'zstd';
  /** qemu-io commands, in order. */
  ops: string[];
  /** Internal snapshot taken after ops, then more writes. */
  snapshot?: { name: string; after: string[] };
  /** Build a base image first and make this one an overlay of it. */
  base?: { clusterSize: number; ops: string[] };
}

const K = 1024;

export const IMAGES: ImageSpec[] = [
  {
    // 64 KiB clusters: one L1 entry covers the disk; snapshot with COW'd clusters; compressed data.
    name: 'c64k-snap',
    clusterSize: 64 * K,
    size: '32M',
    ops: ['write -P 0x11 0 192k', 'write -c -P 0x22 1M 128k', 'write -P 0x33 5M 64k', 'write -P 0x44 20M 100k'],
    snapshot: { name: 's1', after: ['write -P 0x55 64k 64k', 'write -P 0x66 30M 64k'] },
  },
  {
    // 4 KiB clusters: 2 MiB per L1 entry, every entry used, guest written in order; a snapshot.
    name: 'c4k-snap',
    clusterSize: 4 * K,
    size: '8M',
    ops: [
      'write -P 0x11 0 40k',
      'write -c -P 0x12 100k 8k',
      'write -P 0x13 2M 12k',
      'write -P 0x14 4100k 20k',
      'write -P 0x15 7M 8k',
    ],
    snapshot: { name: 's1', after: ['write -P 0x21 8k 8k', 'write -P 0x22 4104k 4k'] },
  },
  {
    // 512-byte clusters: 32 KiB per L1 entry, 32 entries, all used, written in guest order.
    name: 'c512-full',
    clusterSize: 512,
    size: '1M',
    ops: Array.from(
      { length: 32 },
      (_, i) =>
        `write ${i % 5 === 2 ? '-c ' : ''}-P 0x${(0x30 + i).toString(16)} ${i * 32}k ${i % 3 === 0 ? '3k' : '1k'}`,
    ),
  },
  {
    // zstd-compressed clusters.
    name: 'c64k-zstd',
    clusterSize: 64 * K,
    size: '16M',
    compression: 'zstd',
    ops: ['write -c -P 0x41 0 256k', 'write -P 0x42 1M 64k', 'write -c -P 0x43 8M 64k'],
  },
  {
    // An overlay on a qcow2 base: unallocated clusters read through to the base.
    name: 'overlay',
    clusterSize: 64 * K,
    size: '16M',
    base: { clusterSize: 64 * K, ops: ['write -P 0x51 0 1M', 'write -P 0x57 6M 128k'] },
    ops: ['write -P 0x52 256k 128k', 'write -P 0x53 4M 64k'],
  },
];

// ---------------------------------------------------------------------------------------------
// Building and reading the undamaged layout (a minimal independent parser: the test oracle).

export interface Layout {
  clusterSize: number;
  virtualSize: number;
  l1Offset: number;
  l1Size: number;
  reftableOffset: number;
  reftableClusters: number;
  refblocks: number[];
  snapshotsOffset: number;
  snapshotL1s: number[];
  /** Active L2 table per L1 index. */
  l2: Map<number, number>;
  /** Per active guest cluster: host byte range it needs [start, end) (data or compressed stream). */
  data: Map<number, { start: number; end: number }>;
}

export interface BuiltImage {
  spec: ImageSpec;
  path: string;
  basePath?: string;
  /** Raw reference of the active disk and of each snapshot (by name). */
  ref: string;
  snapRefs: Map<string, string>;
  layout: Layout;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
}

function qemuIo(file: string, cmds: string[]): void {
  if (!cmds.length) return;
  const args = ['-f', 'qcow2'];
  for (const c of cmds) args.push('-c', c);
  args.push(file);
  const r = spawnSync('qemu-io', args, { encoding: 'utf8' });
  if (r.status !== 0 || /failed|error/i.test(r.stdout + r.stderr))
    throw new Error(`qemu-io on ${file}: ${r.stdout}${r.stderr}`);
}

export function buildImage(dir: string, spec: ImageSpec): BuiltImage {
  const path = join(dir, `${spec.name}.qcow2`);
  let basePath: string | undefined;
  const opts = [`cluster_size=${spec.clusterSize}`];
  if (spec.compression) opts.push(`compression_type=${spec.compression}`);
  if (spec.base) {
    basePath = join(dir, `${spec.name}-base.qcow2`);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${spec.base.clusterSize}`, basePath, spec.size]);
    qemuIo(basePath, spec.base.ops);
    sh('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      opts.join(','),
      '-b',
      `${spec.name}-base.qcow2`,
      '-F',
      'qcow2',
      path,
    ]);
  } else {
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts.join(','), path, spec.size]);
  }
  qemuIo(path, spec.ops);
  const snapRefs = new Map<string, string>();
  if (spec.snapshot) {
    sh('qemu-img', ['snapshot', '-c', spec.snapshot.name, path]);
    qemuIo(path, spec.snapshot.after);
    const sref = join(dir, `${spec.name}.${spec.snapshot.name}.raw`);
    sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '-l', `snapshot.name=${spec.snapshot.name}`, path, sref]);
    snapRefs.set(spec.snapshot.name, sref);
  }
  const ref = join(dir, `${spec.name}.raw`);
  sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, ref]);
  return { spec, path, basePath, ref, snapRefs, layout: readLayout(path) };
}

function be64(buf: Buffer, o: number): number {
  return Number(buf.readBigUInt64BE(o));
}

export function readLayout(path: string): Layout {
  const f = readFileSync(path);
  const cb = f.readUInt32BE(20);
  const cs = 2 ** cb;
  const l1Offset = be64(f, 40);
  const l1Size = f.readUInt32BE(36);
  const reftableOffset = be64(f, 48);
  const reftableClusters = f.readUInt32BE(56);
  const nbSnap = f.readUInt32BE(60);
  const snapshotsOffset = be64(f, 64);
  const refblocks: number[] = [];
  for (let i = 0; i < (reftableClusters * cs) / 8; i++) {
    const e = be64(f, reftableOffset + i * 8);
    if (e) refblocks.push(e);
  }
  const snapshotL1s: number[] = [];
  let p = snapshotsOffset;
  for (let i = 0; i < nbSnap; i++) {
    snapshotL1s.push(be64(f, p));
    const len = 40 + f.readUInt32BE(p + 36) + f.readUInt16BE(p + 12) + f.readUInt16BE(p + 14);
    p += Math.ceil(len / 8) * 8;
  }
  const l2 = new Map<number, number>();
  const data = new Map<number, { start: number; end: number }>();
  const entries = cs / 8;
  const x = 62 - (cb - 8);
  for (let i = 0; i < l1Size; i++) {
    const e = f.readBigUInt64BE(l1Offset + i * 8) & 0x00fffffffffffe00n;
    if (!e) continue;
    l2.set(i, Number(e));
    for (let j = 0; j < entries; j++) {
      const d = f.readBigUInt64BE(Number(e) + j * 8);
      const g = i * entries + j;
      if (d & (1n << 62n)) {
        const off = Number(d & ((1n << BigInt(x)) - 1n));
        const sectors = Number((d >> BigInt(x)) & ((1n << BigInt(cb - 8)) - 1n)) + 1;
        data.set(g, { start: off, end: Math.min(f.length, (Math.floor(off / 512) + sectors) * 512) });
      } else {
        const host = Number(d & 0x00fffffffffffe00n);
        if (host && !(d & 1n)) data.set(g, { start: host, end: host + cs });
      }
    }
  }
  return {
    clusterSize: cs,
    virtualSize: be64(f, 24),
    l1Offset,
    l1Size,
    reftableOffset,
    reftableClusters,
    refblocks,
    snapshotsOffset,
    snapshotL1s,
    l2,
    data,
  };
}

// ---------------------------------------------------------------------------------------------
// Damage.

export interface Damage {
  kind: string;
  where: string;
  /** Guest ranges of the active disk that cannot be recovered (destroyed tables). */
  lostRanges: Array<[number, number]>;
  /** Same for the snapshot disk. */
  snapLostRanges: Array<[number, number]>;
  /** File cut here (truncation). */
  cut?: number;
  /** Salvage options this damage needs (e.g. the backing file name lost with the header). */
  backing?: string;
  /** The backing file is removed before salvaging. */
  removeBacking?: boolean;
  /** Salvage with --place-orphans (an L1 that looks intact but lost entries). */
  placeOrphans?: boolean;
  /** Expected 100% of the guest data outside lostRanges. */
  expectFull: boolean;
  apply(file: string): void;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s & 0xff;
  };
}

function writeAt(file: string, off: number, data: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, data, 0, data.length, off);
  } finally {
    closeSync(fd);
  }
}

const zeros = (n: number): Uint8Array => new Uint8Array(n);
function garbage(n: number, seed: number): Uint8Array {
  const r = seeded(seed);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r();
  return b;
}

export function damagesFor(img: BuiltImage): Damage[] {
  const L = img.layout;
  const cs = L.clusterSize;
  const cov = cs * (cs / 8);
  const out: Damage[] = [];
  const base = {
    lostRanges: [] as Array<[number, number]>,
    snapLostRanges: [] as Array<[number, number]>,
    expectFull: true,
  };
  const overlay = !!img.basePath;
  out.push({
    ...base,
    kind: 'header zeroed',
    where: 'cluster 0',
    backing: overlay ? img.basePath : undefined,
    apply: (f) => writeAt(f, 0, zeros(cs)),
  });
  out.push({
    ...base,
    kind: 'header overwritten',
    where: 'first 4 KiB random',
    backing: overlay ? img.basePath : undefined,
    apply: (f) => writeAt(f, 0, garbage(Math.min(cs, 4096), 1)),
  });
  out.push({
    ...base,
    kind: 'L1 zeroed',
    where: `0x${L.l1Offset.toString(16)}`,
    apply: (f) => writeAt(f, L.l1Offset, zeros(L.l1Size * 8)),
  });
  out.push({
    ...base,
    kind: 'L1 overwritten',
    where: `0x${L.l1Offset.toString(16)} random`,
    apply: (f) => writeAt(f, L.l1Offset, garbage(L.l1Size * 8, 2)),
  });
  const used = [...L.l2.keys()];
  if (used.length >= 3) {
    const hit = [used[1]!, used[used.length - 2]!];
    out.push({
      ...base,
      kind: 'L1 entries overwritten',
      where: `L1[${hit.join(', ')}] random`,
      apply: (f) => {
        for (const [k, i] of hit.entries()) writeAt(f, L.l1Offset + i * 8, garbage(8, 10 + k));
      },
    });
    out.push({
      ...base,
      kind: 'L1 entry zeroed',
      where: `L1[${used[2]}] (--place-orphans)`,
      placeOrphans: true,
      apply: (f) => writeAt(f, L.l1Offset + used[2]! * 8, zeros(8)),
    });
  }
  out.push({
    ...base,
    kind: 'header + L1 zeroed',
    where: 'cluster 0 and L1',
    backing: overlay ? img.basePath : undefined,
    apply: (f) => {
      writeAt(f, 0, zeros(cs));
      writeAt(f, L.l1Offset, zeros(L.l1Size * 8));
    },
  });
  out.push({
    ...base,
    kind: 'refcounts zeroed',
    where: 'table + blocks',
    apply: (f) => {
      writeAt(f, L.reftableOffset, zeros(L.reftableClusters * cs));
      for (const b of L.refblocks) writeAt(f, b, zeros(cs));
    },
  });
  out.push({
    ...base,
    kind: 'header + refcounts zeroed',
    where: 'cluster 0, table + blocks',
    backing: overlay ? img.basePath : undefined,
    apply: (f) => {
      writeAt(f, 0, zeros(cs));
      writeAt(f, L.reftableOffset, zeros(L.reftableClusters * cs));
      for (const b of L.refblocks) writeAt(f, b, zeros(cs));
    },
  });
  if (L.snapshotL1s.length) {
    out.push({
      ...base,
      kind: 'snapshot table zeroed',
      where: `0x${L.snapshotsOffset.toString(16)}`,
      apply: (f) => writeAt(f, L.snapshotsOffset, zeros(cs)),
    });
  }
  // L2 tables destroyed one at a time (first, middle, last) — zeroed and overwritten.
  const idx = [...L.l2.keys()];
  const picks = [...new Set([idx[0], idx[Math.floor(idx.length / 2)], idx[idx.length - 1]])].filter(
    (x): x is number => x !== undefined,
  );
  for (const [n, i] of picks.entries()) {
    const host = L.l2.get(i)!;
    const range: [number, number] = [i * cov, Math.min((i + 1) * cov, L.virtualSize)];
    const snapRanges: Array<[number, number]> = [];
    // A table shared with the snapshot is lost for both disks.
    for (const sl1 of L.snapshotL1s) {
      const f = readFileSync(img.path);
      for (let k = 0; k * 8 < cs; k++)
        if ((f.readBigUInt64BE(sl1 + k * 8) & 0x00fffffffffffe00n) === BigInt(host))
          snapRanges.push([k * cov, Math.min((k + 1) * cov, L.virtualSize)]);
    }
    out.push({
      ...base,
      kind: 'L2 table destroyed',
      where: `L1[${i}] → 0x${host.toString(16)} ${n % 2 ? 'random' : 'zeroed'}`,
      lostRanges: [range],
      snapLostRanges: snapRanges,
      apply: (f) => writeAt(f, host, n % 2 ? garbage(cs, 3 + n) : zeros(cs)),
    });
  }
  const size = statSync(img.path).size;
  for (const frac of [0.5, 0.8]) {
    const cut = Math.floor((size * frac) / 512) * 512;
    out.push({
      ...base,
      kind: 'truncated',
      where: `at ${Math.round(frac * 100)}% (0x${cut.toString(16)})`,
      cut,
      expectFull: false,
      apply: (f) => truncateSync(f, cut),
    });
  }
  if (overlay)
    out.push({
      ...base,
      kind: 'backing file missing',
      where: img.spec.name,
      removeBacking: true,
      expectFull: false,
      apply: () => {},
    });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measuring.

export interface Measure {
  /** Non-zero bytes of the reference (the known data). */
  known: number;
  /** Of those, reproduced exactly. */
  recovered: number;
  /** Known bytes outside the ranges that are expected to be lost, and how many of them came back. */
  knownOutside: number;
  recoveredOutside: number;
  /** Output bytes that are non-zero and differ from the reference (wrong data, never acceptable). */
  wrong: number;
}

export function measure(
  out: string,
  ref: string,
  lost: Array<[number, number]> = [],
  only?: (offset: number) => boolean,
): Measure {
  const a = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
  const b = readFileSync(ref);
  const m: Measure = { known: 0, recovered: 0, knownOutside: 0, recoveredOutside: 0, wrong: 0 };
  const inLost = (o: number): boolean => lost.some(([s, e]) => o >= s && o < e);
  let lostCache = -1;
  let lostHere = false;
  for (let o = 0; o < b.length; o++) {
    const r = b[o]!;
    const v = o < a.length ? a[o]! : 0;
    if (v !== r && v !== 0) m.wrong++;
    if (r === 0) continue;
    if (only && !only(o)) continue;
    m.known++;
    if (v === r) m.recovered++;
    const blk = Math.floor(o / 4096);
    if (blk !== lostCache) {
      lostCache = blk;
      lostHere = inLost(o);
    }
    if (!lostHere) {
      m.knownOutside++;
      if (v === r) m.recoveredOutside++;
    }
  }
  for (let o = b.length; o < a.length; o++) if (a[o] !== 0) m.wrong++;
  return m;
}

export interface ScenarioResult {
  image: string;
  damage: string;
  where: string;
  active: Measure;
  /** The snapshot disk, when the image has one (found among the salvaged disks by content). */
  snapshot?: Measure;
  /** Known bytes that are physically present for truncation / missing backing (lower bound expected). */
  presentBytes?: number;
  qcow2Check?: { status: number; clean: boolean; sameAsRaw: boolean };
  /** The output reads back as the report claims: its size is the reported virtual size and every
   * reported lost range reads as zeros. */
  claimsHold: boolean;
  /** The damaged image was not modified by the salvage. */
  imageUnchanged: boolean;
  report: SalvageReport;
  expectFull: boolean;
  lostRanges: Array<[number, number]>;
}

export async function runScenario(
  dir: string,
  img: BuiltImage,
  d: Damage,
  n: number,
  opts: { qcow2?: boolean } = {},
): Promise<ScenarioResult> {
  const work = join(dir, `${img.spec.name}-${n}`);
  const file = `${work}.qcow2`;
  copyFileSync(img.path, file);
  let movedBase: string | undefined;
  // The overlay names its base relatively, and the damaged copy sits next to it.
  if (img.basePath && d.removeBacking) {
    movedBase = img.basePath;
    renameSync(img.basePath, `${img.basePath}.away`);
  }
  try {
    d.apply(file);
    const before = hashFile(file);
    const out = `${work}.out.raw`;
    const lostFound = d.lostRanges.length ? `${work}.found` : undefined;
    const report = await salvageImage(file, out, {
      snapshot: img.snapRefs.size ? 'all' : undefined,
      backing: d.backing,
      placeOrphans: d.placeOrphans,
      lostFound,
    });
    const L = img.layout;
    const result: ScenarioResult = {
      image: img.spec.name,
      damage: d.kind,
      where: d.where,
      report,
      expectFull: d.expectFull,
      lostRanges: d.lostRanges,
      active: measure(out, img.ref, d.lostRanges),
      claimsHold: claimsHold(report),
      imageUnchanged: false,
    };
    if (d.cut !== undefined || d.removeBacking) {
      // What is physically present: clusters whose data (and L2 table) lie before the cut, or
      // that the overlay itself holds when the backing file is gone.
      const cs = L.clusterSize;
      const entries = cs / 8;
      const cut = d.cut ?? Infinity;
      const present = (o: number): boolean => {
        const g = Math.floor(o / cs);
        const r = L.data.get(g);
        const l2 = L.l2.get(Math.floor(g / entries));
        if (L.l1Offset + L.l1Size * 8 > cut || (l2 !== undefined && l2 + cs > cut)) return false;
        // Not in the overlay: the base provides it, unless the base is gone.
        if (!r) return !!img.basePath && !d.removeBacking;
        // A normal cluster cut in the middle keeps the bytes before the cut; a compressed stream needs all of it.
        return r.end - r.start === cs ? r.start + (o % cs) < cut : r.end <= cut;
      };
      result.presentBytes = measure(img.ref, img.ref, [], present).known;
    }
    for (const [name, sref] of img.snapRefs) {
      // The snapshot disk: by ID/name when the table survived, else the unnamed disk that best matches.
      let best: Measure | undefined;
      for (const v of report.views) {
        if (v.kind !== 'snapshot' || !v.output) continue;
        const m = measure(v.output, sref, d.snapLostRanges);
        if (!best || m.recovered > best.recovered) best = m;
      }
      void name;
      result.snapshot = best ?? measure(join(dir, 'nonexistent-never'), sref);
    }
    if (opts.qcow2) {
      const q = `${work}.out.qcow2`;
      await salvageImage(file, q, { format: 'qcow2', backing: d.backing, placeOrphans: d.placeOrphans });
      const chk = spawnSync('qemu-img', ['check', '-f', 'qcow2', '--output=json', q], { encoding: 'utf8' });
      const j = chk.stdout.trim() ? (JSON.parse(chk.stdout) as Record<string, unknown>) : {};
      const back = `${work}.back.raw`;
      sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', q, back]);
      const same = Buffer.compare(readFileSync(back), readFileSync(out)) === 0;
      result.qcow2Check = {
        status: chk.status ?? -1,
        clean: chk.status === 0 && !j.corruptions && !j.leaks && !j['check-errors'],
        sameAsRaw: same,
      };
    }
    result.imageUnchanged = hashFile(file) === before;
    return result;
  } finally {
    if (movedBase) renameSync(`${movedBase}.away`, movedBase);
    for (const f of [file, `${work}.out.raw`, `${work}.out.qcow2`, `${work}.back.raw`, `${work}.found`])
      rmSync(f, { force: true });
    cleanupSnapshots(work);
  }
}

function cleanupSnapshots(work: string): void {
  const dir = join(work, '..');
  for (const f of spawnSync('ls', [dir], { encoding: 'utf8' }).stdout.split('\n')) {
    if (f && join(dir, f).startsWith(`${work}.out.snapshot-`)) rmSync(join(dir, f), { force: true });
  }
}

function hashFile(f: string): string {
  return createHash('sha256').update(readFileSync(f)).digest('hex');
}

/** Every exported disk has the reported size and reads as zeros over each reported lost range (the part of it
 * in the disk: past a guessed size, the range of what the disk may have held beyond it is named too). */
function claimsHold(r: SalvageReport): boolean {
  for (const v of r.views) {
    if (!v.output) continue;
    const b = readFileSync(v.output);
    if (b.length !== v.virtualSize) return false;
    for (const l of v.lost) for (let o = l.start; o < Math.min(l.end, b.length); o++) if (b[o] !== 0) return false;
  }
  return true;
}

export function pct(a: number, b: number): string {
  return b === 0 ? '—' : `${((100 * a) / b).toFixed(1)}%`;
}

/** Run the whole campaign: every image × every damage. */
export async function runCampaign(
  dir: string,
  opts: { qcow2?: boolean; images?: string[] } = {},
): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  let n = 0;
  for (const spec of IMAGES) {
    if (opts.images && !opts.images.includes(spec.name)) continue;
    const img = buildImage(dir, spec);
    for (const d of damagesFor(img)) results.push(await runScenario(dir, img, d, n++, opts));
  }
  return results;
}

export function formatTable(results: ScenarioResult[]): string[] {
  const lines: string[] = [];
  lines.push(
    '| image | damage | where | active recovered | outside lost ranges | snapshot | qcow2 out | lost (report) | lost+found |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const a = r.active;
    const outside =
      r.presentBytes !== undefined
        ? `${pct(a.recovered, r.presentBytes)} of present`
        : pct(a.recoveredOutside, a.knownOutside);
    const snap = r.snapshot ? pct(r.snapshot.recoveredOutside, r.snapshot.knownOutside) : '';
    const q = r.qcow2Check
      ? r.qcow2Check.clean && r.qcow2Check.sameAsRaw
        ? 'check clean'
        : `FAIL(${r.qcow2Check.status})`
      : '';
    const lost = r.report.views.find((v) => v.kind === 'active')?.bytes.lost ?? 0;
    const lf = r.report.lostFound ? `${r.report.lostFound.bytes} B` : '';
    lines.push(
      `| ${r.image} | ${r.damage} | ${r.where} | ${pct(a.recovered, a.known)}${a.wrong ? ` (${a.wrong} wrong)` : ''} | ${outside} | ${snap} | ${q} | ${lost} B | ${lf} |`,
    );
  }
  // Per damage kind.
  lines.push(
    '',
    '| damage kind | scenarios | known bytes | recovered | recoverable (outside destroyed tables / physically present) | recovered of recoverable |',
    '|---|---|---|---|---|---|',
  );
  const kinds = new Map<string, { n: number; known: number; rec: number; able: number; recAble: number }>();
  for (const r of results) {
    const k = kinds.get(r.damage) ?? { n: 0, known: 0, rec: 0, able: 0, recAble: 0 };
    k.n++;
    k.known += r.active.known;
    k.rec += r.active.recovered;
    k.able += r.presentBytes ?? r.active.knownOutside;
    k.recAble +=
      r.presentBytes !== undefined ? Math.min(r.active.recovered, r.presentBytes) : r.active.recoveredOutside;
    kinds.set(r.damage, k);
  }
  for (const [kind, k] of kinds)
    lines.push(`| ${kind} | ${k.n} | ${k.known} | ${pct(k.rec, k.known)} | ${k.able} | ${pct(k.recAble, k.able)} |`);
  return lines;
}

export async function run(ctx: { dir: string; log: (l: string) => void }): Promise<void> {
  const t0 = Date.now();
  const results = await runCampaign(ctx.dir, { qcow2: true });
  for (const l of formatTable(results)) ctx.log(l);
  ctx.log(`\n${results.length} scenarios in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  ctx.log('(speed: see the next section, 55-salvage-speed)');
}
