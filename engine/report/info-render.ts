// `qemu-img info` output, JSON and human, byte for byte as QEMU 7.2 prints it (see qemu-json.ts for
// the key order). Our own additions (unknown header extensions) use an "x-" key, only when present.
import { dumpQemuHuman, sizeToStr, toQemuJson, type QDict, type QValue } from './qemu-json.js';
import type { EncryptInfo, ImageInfo, Qcow2SpecificInfo, SnapshotInfo } from '../image/info.js';

/** The ImageInfo QAPI struct as a QObject (fields in the schema's order). */
export function imageInfoQObject(info: ImageInfo): QDict {
  return {
    filename: info.filename,
    format: info.format,
    'dirty-flag': info.dirtyFlag,
    'actual-size': info.actualSize,
    'virtual-size': info.virtualSize,
    'cluster-size': info.clusterSize,
    encrypted: info.encrypted,
    'backing-filename': info.backingFilename,
    'full-backing-filename': info.fullBackingFilename,
    'backing-filename-format': info.backingFilenameFormat,
    snapshots: info.snapshots?.map(snapshotQObject),
    'format-specific': info.formatSpecific
      ? { type: 'qcow2', data: qcow2SpecificQObject(info.formatSpecific) }
      : undefined,
  };
}

function snapshotQObject(s: SnapshotInfo): QDict {
  return {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': s.vmClockSec,
    'vm-clock-nsec': s.vmClockNsec,
    icount: s.icount,
  };
}

function qcow2SpecificQObject(q: Qcow2SpecificInfo): QDict {
  const d: QDict = {
    compat: q.compat,
    'data-file': q.dataFile,
    'data-file-raw': q.dataFileRaw,
    'extended-l2': q.extendedL2,
    'lazy-refcounts': q.lazyRefcounts,
    corrupt: q.corrupt,
    'refcount-bits': q.refcountBits,
    encrypt: q.encrypt ? encryptQObject(q.encrypt) : undefined,
    bitmaps: q.bitmaps?.map((b) => ({ name: b.name, granularity: b.granularity, flags: b.flags })),
    'compression-type': q.compressionType,
  };
  if (q.unknownExtensions.length > 0)
    d['x-unknown-header-extensions'] = q.unknownExtensions.map((e) => ({
      type: `0x${e.type.toString(16).padStart(8, '0')}`,
      offset: e.offset,
      length: e.length,
    }));
  return d;
}

function encryptQObject(e: EncryptInfo): QDict {
  if (e.format === 'aes') return { format: 'aes' };
  return {
    format: 'luks',
    'cipher-alg': e.cipherAlg,
    'cipher-mode': e.cipherMode,
    'ivgen-alg': e.ivgenAlg,
    'ivgen-hash-alg': e.ivgenHashAlg,
    'hash-alg': e.hashAlg,
    'payload-offset': e.payloadOffset,
    'master-key-iters': e.masterKeyIters,
    uuid: e.uuid,
    slots: e.slots.map(
      (s): QDict => ({
        active: s.active,
        iters: s.active ? s.iters : undefined,
        stripes: s.active ? s.stripes : undefined,
        'key-offset': s.keyOffset,
      }),
    ),
  };
}

/** `qemu-img info --output=json`: one object, or an array with --backing-chain. */
export function renderInfoJson(infos: ImageInfo | ImageInfo[]): string {
  const v: QValue = Array.isArray(infos) ? infos.map(imageInfoQObject) : imageInfoQObject(infos);
  return `${toQemuJson(v)}\n`;
}

/** `qemu-img info` human form; chain layers are separated by an empty line. */
export function renderInfoHuman(infos: ImageInfo | ImageInfo[]): string {
  return (Array.isArray(infos) ? infos : [infos]).map(humanOne).join('\n');
}

function humanOne(info: ImageInfo): string {
  let s = `image: ${info.filename}\nfile format: ${info.format}\n`;
  s += `virtual size: ${sizeToStr(info.virtualSize)} (${info.virtualSize} bytes)\n`;
  s += `disk size: ${info.actualSize === undefined ? 'unavailable' : sizeToStr(info.actualSize)}\n`;
  if (info.encrypted) s += 'encrypted: yes\n';
  if (info.clusterSize !== undefined) s += `cluster_size: ${info.clusterSize}\n`;
  if (info.dirtyFlag) s += 'cleanly shut down: no\n';
  if (info.backingFilename !== undefined) {
    s += `backing file: ${info.backingFilename}`;
    if (info.fullBackingFilename === undefined) s += ' (cannot determine actual path)';
    else if (info.fullBackingFilename !== info.backingFilename) s += ` (actual path: ${info.fullBackingFilename})`;
    s += '\n';
    if (info.backingFilenameFormat !== undefined) s += `backing file format: ${info.backingFilenameFormat}\n`;
  }
  if (info.snapshots) {
    s += 'Snapshot list:\n';
    s += `${'ID'.padEnd(10)}${'TAG'.padEnd(17)}${'VM SIZE'.padStart(8)}${'DATE'.padStart(20)}${'VM CLOCK'.padStart(13)}${'ICOUNT'.padStart(11)}\n`;
    for (const sn of info.snapshots) s += `${snapshotLine(sn)}\n`;
  }
  if (info.formatSpecific) {
    s += 'Format specific information:\n';
    s += dumpQemuHuman(qcow2SpecificQObject(info.formatSpecific), 1);
  }
  return s;
}

/** bdrv_snapshot_dump: "%-9s %-16s %8s%20s%13s%11s" (widths in bytes, as printf counts them). */
function snapshotLine(sn: SnapshotInfo): string {
  const d = new Date(sn.dateSec * 1000); // QEMU formats the date in local time
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const date = `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
  const nsec = sn.vmClockSec * 1_000_000_000n + BigInt(sn.vmClockNsec);
  const secs = BigInt.asUintN(64, nsec) / 1_000_000_000n;
  const int = (v: bigint): number => Number(BigInt.asIntN(32, v));
  const pad2 = (n: number): string => (n < 0 ? `-${String(-n).padStart(1, '0')}` : String(n).padStart(2, '0'));
  const clock = `${pad2(int(secs / 3600n))}:${pad2(int((secs / 60n) % 60n))}:${pad2(int(secs % 60n))}.${String(int((BigInt.asUintN(64, nsec) / 1_000_000n) % 1000n)).padStart(3, '0')}`;
  const icount = sn.icount === undefined ? '' : sn.icount.toString();
  const id = truncBytes(sn.id, 127);
  const name = truncBytes(sn.name, 255);
  return (
    `${padEndBytes(id, 9)} ${padEndBytes(name, 16)} ${padStartBytes(sizeToStr(BigInt.asUintN(64, sn.vmStateSize)), 8)}` +
    `${padStartBytes(date, 20)}${padStartBytes(clock, 13)}${padStartBytes(icount, 11)}`
  );
}

const encoder = new TextEncoder();
const byteLen = (s: string): number => encoder.encode(s).length;
const padEndBytes = (s: string, w: number): string => s + ' '.repeat(Math.max(0, w - byteLen(s)));
const padStartBytes = (s: string, w: number): string => ' '.repeat(Math.max(0, w - byteLen(s))) + s;

/** pstrcpy into a fixed C buffer: keep at most `max` bytes (never splitting a character). */
function truncBytes(s: string, max: number): string {
  if (byteLen(s) <= max) return s;
  let out = '';
  for (const ch of s) {
    if (byteLen(out + ch) > max) break;
    out += ch;
  }
  return out;
}
