// Base images with known guest content, made by real QEMU: qemu-img creates them, qemu-io writes
// seeded patterns at seeded guest offsets (so layouts come out fragmented the way QEMU allocates),
// and the ground truth is QEMU's own reading of the intact image (`qemu-img convert -O raw`).
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { checkFile } from '../engine/check/index.js';
import type { Prng } from './prng.js';
import { qemuImg, qemuIo } from './tools.js';
import { type Truth, readTruth } from './truth.js';

export interface BaseConfig {
  clusterSize: number;
  refcountBits: number;
  extendedL2: boolean;
  snapshot: boolean;
  compressed: boolean;
  backing: boolean;
  virtualSize: number;
}

export interface Base {
  name: string;
  config: BaseConfig;
  /** The intact top image. */
  image: string;
  /** Its backing file, when it has one (never damaged). */
  backingFile?: string;
  /** What the guest reads on the intact image, byte for byte (QEMU's reading, through the chain). */
  truth: Truth;
  /** The same as a raw file (for the campaign's workers to read). */
  truthFile: string;
  /** HostRole per host cluster of the intact image (from our checker; only used to aim the damage). */
  roles: Uint8Array;
  fileSize: number;
}

/** A spread of configurations: every cluster size and refcount width, snapshots, backing, compression. */
export function baseConfigs(): BaseConfig[] {
  const out: BaseConfig[] = [];
  const plain = (cs: number, rb = 16, extra: Partial<BaseConfig> = {}): BaseConfig => ({
    clusterSize: cs,
    refcountBits: rb,
    extendedL2: false,
    snapshot: false,
    compressed: false,
    backing: false,
    virtualSize: cs <= 4096 ? 8 << 20 : 64 << 20,
    ...extra,
  });
  out.push(plain(65536), plain(4096), plain(512), plain(2 << 20, 16, { virtualSize: 128 << 20 }));
  out.push(plain(65536, 1), plain(4096, 64), plain(65536, 8));
  out.push(plain(65536, 16, { snapshot: true }), plain(4096, 16, { snapshot: true }));
  out.push(plain(65536, 16, { compressed: true }), plain(4096, 16, { compressed: true, snapshot: true }));
  out.push(plain(65536, 16, { extendedL2: true }), plain(32768, 16, { extendedL2: true, snapshot: true }));
  out.push(plain(65536, 16, { backing: true }), plain(4096, 16, { backing: true }));
  return out;
}

function configName(c: BaseConfig): string {
  const parts = [`c${c.clusterSize}`, `r${c.refcountBits}`];
  if (c.extendedL2) parts.push('xl2');
  if (c.snapshot) parts.push('snap');
  if (c.compressed) parts.push('comp');
  if (c.backing) parts.push('back');
  return parts.join('-');
}

/**
 * Give every snapshot of `image` the same creation time. QEMU stamps the wall clock into the
 * snapshot table, and damage that copies or flips the table's bytes would otherwise make another
 * case on every run: a seed and case number must name one case.
 */
function pinSnapshotTimes(image: string): void {
  const fd = openSync(image, 'r+');
  try {
    const at = (n: number, pos: number): Buffer => {
      const b = Buffer.alloc(n);
      readSync(fd, b, 0, n, pos);
      return b;
    };
    const header = at(72, 0);
    const count = header.readUInt32BE(60);
    let pos = Number(header.readBigUInt64BE(64));
    const when = Buffer.alloc(8);
    for (let i = 0; i < count; i++) {
      const e = at(40, pos);
      when.writeUInt32BE(1_700_000_000 + i, 0);
      writeSync(fd, when, 0, 8, pos + 16);
      const size = 40 + e.readUInt32BE(36) + e.readUInt16BE(12) + e.readUInt16BE(14);
      pos += Math.ceil(size / 8) * 8;
    }
  } finally {
    closeSync(fd);
  }
}

/** Seeded guest writes: patterns at aligned offsets, in a random order (so tables interleave with data). */
function writeCommands(rng: Prng, c: BaseConfig, count: number, touched = new Set<number>()): string[] {
  const cmds: string[] = [];
  const unit = Math.max(512, Math.min(c.clusterSize, 65536));
  const slots = Math.floor(c.virtualSize / unit);
  const cs = c.clusterSize;
  for (let i = 0; i < count; i++) {
    const at = Math.floor(rng() * slots) * unit;
    const len = Math.min(c.virtualSize - at, unit * (1 + Math.floor(rng() * 4)));
    const pattern = 1 + Math.floor(rng() * 254);
    // Compressed writes must cover whole clusters that were never written (QEMU refuses to overwrite).
    const cl = Math.floor(at / cs);
    if (c.compressed && rng() < 0.5 && cs <= 65536 && !touched.has(cl) && (cl + 1) * cs <= c.virtualSize) {
      touched.add(cl);
      cmds.push(`write -c -P ${pattern} ${cl * cs} ${cs}`);
      continue;
    }
    for (let k = Math.floor(at / cs); k * cs < at + len; k++) touched.add(k);
    cmds.push(`write -P ${pattern} ${at} ${len}`);
  }
  return cmds;
}

export async function makeBase(dir: string, c: BaseConfig, rng: Prng): Promise<Base> {
  const name = configName(c);
  const image = join(dir, `${name}.qcow2`);
  const opts = [`cluster_size=${c.clusterSize}`, `refcount_bits=${c.refcountBits}`];
  if (c.extendedL2) opts.push('extended_l2=on');
  let backingFile: string | undefined;
  if (c.backing) {
    backingFile = join(dir, `${name}.base.qcow2`);
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts.join(','), backingFile, String(c.virtualSize)]);
    qemuIo(backingFile, writeCommands(rng, { ...c, compressed: false }, 12));
    qemuImg([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      opts.join(','),
      '-b',
      `${name}.base.qcow2`,
      '-F',
      'qcow2',
      image,
      String(c.virtualSize),
    ]);
  } else {
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts.join(','), image, String(c.virtualSize)]);
  }
  const touched = new Set<number>();
  qemuIo(image, writeCommands(rng, c, 10 + Math.floor(rng() * 20), touched));
  if (c.snapshot) {
    qemuImg(['snapshot', '-c', 'before', image]);
    pinSnapshotTimes(image);
    // After a snapshot every cluster is shared, so no compressed write may land on a written one either.
    qemuIo(image, writeCommands(rng, c, 6 + Math.floor(rng() * 10), touched));
    if (rng() < 0.3) {
      qemuImg(['snapshot', '-c', 'after', image]);
      pinSnapshotTimes(image);
    }
  }
  const rawPath = join(dir, `${name}.truth.raw`);
  qemuImg(['convert', '-U', '-O', 'raw', image, rawPath]);
  const truth = readTruth(rawPath);
  const check = await checkFile(image, { roleMap: true, explainReferrers: false });
  if (!check.roleMap) throw new Error(`no role map for base ${name}`);
  const fileSize = statSync(image).size;
  return { name, config: c, image, backingFile, truth, truthFile: rawPath, roles: check.roleMap, fileSize };
}

/** Every base of the campaign, built once per run (a few seconds). */
export async function makeBases(dir: string, rng: Prng, only: string[] = []): Promise<Base[]> {
  const configs = baseConfigs();
  const chosen = only.length === 0 ? configs : configs.filter((c) => only.some((o) => configName(c).includes(o)));
  if (chosen.length === 0) throw new Error(`--bases ${only.join(',')}: no base configuration has such a name`);
  const out: Base[] = [];
  for (const c of chosen) out.push(await makeBase(dir, c, rng));
  return out;
}
