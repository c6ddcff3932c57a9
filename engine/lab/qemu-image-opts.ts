// How QEMU opens the logged image: qcow2 over blklogwrites over the image file (and with a
// blkdebug config, QEMU's fault injector between qcow2 and blklogwrites). One node tree, spelled
// two ways: as --image-opts (`file.driver=blklogwrites,…`) when a tool opens the image itself, and
// as a json: filename when the image is the backing file of an overlay (qemu-img commit opens it
// through the overlay's backing name; --image-opts cannot replace that name's node).
import { resolve } from 'node:path';

export type QemuControl = 'none' | 'drop-flushes' | 'no-flush';

type Node = { [key: string]: string | number | boolean | Node };

export interface LoggedNodeOptions {
  /** Start a new log (false: append to the log earlier steps wrote). */
  first: boolean;
  control: QemuControl;
  /** blkdebug rules file: stack the fault injector between qcow2 and blklogwrites. */
  blkdebugConfig?: string;
  /** Extra qcow2 options, `key=value,…` (e.g. discard=unmap). */
  opts?: string;
}

const scalar = (v: string): string | boolean => (v === 'on' ? true : v === 'off' ? false : v);

function setPath(node: Node, dotted: string, value: string | number | boolean): void {
  const keys = dotted.split('.');
  let n = node;
  for (const k of keys.slice(0, -1)) {
    const next = n[k];
    if (typeof next === 'object') n = next;
    else n = n[k] = {};
  }
  n[keys.at(-1)!] = value;
}

/** The node tree of the logged image; `dir` makes file names absolute (a json: name outlives the cwd). */
export function loggedNode(o: LoggedNodeOptions, dir?: string): Node {
  const file = (name: string) => (dir ? resolve(dir, name) : name);
  const log: Node = {
    driver: 'blklogwrites',
    file: { driver: 'file', filename: file('disk.qcow2') },
    log: { driver: 'file', filename: file('log.bin') },
    // The superblock after every entry: without flushes (cache.no-flush) it would never be written.
    'log-super-update-interval': 1,
    'log-append': !o.first,
  };
  const node: Node = { driver: 'qcow2' };
  for (const kv of (o.opts ?? '').split(',').filter(Boolean)) {
    const eq = kv.indexOf('=');
    setPath(node, kv.slice(0, eq), scalar(kv.slice(eq + 1)));
  }
  if (o.control === 'no-flush') setPath(node, 'cache.no-flush', true);
  node.file = o.blkdebugConfig ? { driver: 'blkdebug', config: file(o.blkdebugConfig), image: log } : log;
  return node;
}

/** The tree as --image-opts: dotted keys, booleans as on/off (names relative to the tool's cwd). */
export function imageOptsString(node: Node, prefix = ''): string {
  return Object.entries(node)
    .map(([k, v]) =>
      typeof v === 'object'
        ? imageOptsString(v, `${prefix}${k}.`)
        : `${prefix}${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v).replaceAll(',', ',,')}`,
    )
    .join(',');
}

/** The tree as a json: filename, for an overlay's backing name. */
export const jsonFilename = (node: Node): string => `json:${JSON.stringify(node)}`;
