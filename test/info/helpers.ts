// Helpers for the info tests: run `qemu-img info` and ours on the same file, make a LUKS image.
import { readFileSync } from 'node:fs';
import { collectImageInfo } from '../../engine/image/info-file.js';
import { renderInfoHuman, renderInfoJson } from '../../engine/report/info-render.js';
import { run, qemuImg, qemuImgCreateLuks } from '../helpers/qemu.js';

export interface Both {
  qemu: string;
  ours: string;
}

/** `qemu-img info` (optionally --backing-chain) and our equivalent, rendered the same way. */
export async function infoBoth(
  file: string,
  output: 'json' | 'human',
  opts: { chain?: boolean; cwd?: string } = {},
): Promise<Both> {
  const args = ['info', `--output=${output}`];
  if (opts.chain) args.push('--backing-chain');
  args.push(file);
  const q = run('qemu-img', args, opts.cwd ? { cwd: opts.cwd } : {});
  if (q.status !== 0) throw new Error(`qemu-img info ${file}: ${q.stderr}`);
  const prev = process.cwd();
  if (opts.cwd) process.chdir(opts.cwd);
  try {
    const infos = await collectImageInfo(file, { backingChain: opts.chain === true });
    const v = opts.chain ? infos : infos[0]!;
    return { qemu: q.stdout, ours: output === 'json' ? renderInfoJson(v) : renderInfoHuman(v) };
  } finally {
    if (opts.cwd) process.chdir(prev);
  }
}

/** QEMU's refusal reason: "qemu-img: Could not open '<file>': <reason>" → <reason>. */
export function qemuRefusal(file: string): string | undefined {
  const q = run('qemu-img', ['info', '--output=json', file]);
  if (q.status === 0) return undefined;
  const line = q.stderr.split('\n').find((l) => l.startsWith('qemu-img: Could not open'));
  return line?.replace(`qemu-img: Could not open '${file}': `, '');
}

/**
 * A LUKS-encrypted qcow2. QEMU times PBKDF2 on creation and sometimes fails with "Unable to get
 * accurate CPU usage" on a busy machine; retry a few times.
 */
export function createLuks(file: string, size: string, extra: string[] = []): void {
  const r = qemuImgCreateLuks([
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    'secret,id=s0,data=pw',
    '-o',
    ['encrypt.format=luks', 'encrypt.key-secret=s0', 'encrypt.iter-time=10', ...extra].join(','),
    file,
    size,
  ]);
  if (r.status !== 0) throw new Error(`could not create a LUKS image: ${r.stderr}`);
}

export function createAes(file: string, size: string): void {
  qemuImg(
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    'secret,id=s0,data=pw',
    '-o',
    'encrypt.format=aes,encrypt.key-secret=s0',
    file,
    size,
  );
}

/** Offsets of header extensions in cluster 0: type → byte offset of its 8-byte header. */
export function extensionOffsets(file: string): Map<number, number> {
  const d = readFileSync(file);
  const version = d.readUInt32BE(4);
  let off = version === 2 ? 72 : d.readUInt32BE(100);
  const out = new Map<number, number>();
  for (;;) {
    const type = d.readUInt32BE(off);
    const len = d.readUInt32BE(off + 4);
    if (type === 0) break;
    out.set(type, off);
    off += 8 + Math.ceil(len / 8) * 8;
  }
  out.set(0, off);
  return out;
}
