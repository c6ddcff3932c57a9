// Follow an image's backing chain the way QEMU opens it for a check: every layer must open, or the
// check fails ("Could not open backing file: ..."). Reads headers only; bounded depth; no loops.
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { FileIO } from '../io/file-io.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { Qcow2FormatError } from '../base/errors.js';

export interface BackingChain {
  /** Backing file names, nearest first, as each header names them. */
  names: string[];
  /** QEMU's reason when a layer cannot be opened (then the check of the top image fails). */
  problem?: string;
}

/** Where QEMU looks for a backing file named `name` by the image at `imagePath`. */
export function resolveBacking(imagePath: string, name: string): string {
  return isAbsolute(name) ? name : join(dirname(imagePath), name);
}

export async function followBackingChain(
  imagePath: string,
  first: { name?: string; format?: string },
): Promise<BackingChain> {
  const names: string[] = [];
  const seen = new Set<string>([await realpath(imagePath).catch(() => imagePath)]);
  let current = imagePath;
  let next = first;
  while (next.name !== undefined) {
    names.push(next.name);
    if (names.length > C.MAX_BACKING_CHAIN_DEPTH)
      return {
        names,
        problem: `Could not open backing file: backing chain deeper than ${C.MAX_BACKING_CHAIN_DEPTH} layers`,
      };
    // Protocol names (nbd:, http:, ...) are not files we can follow; QEMU would need the network.
    if (/^[a-z+]+:/.test(next.name) && !isAbsolute(next.name)) return { names };
    const path = resolveBacking(current, next.name);
    const real = await realpath(path).catch(() => undefined);
    if (real === undefined)
      return { names, problem: `Could not open backing file: Could not open '${path}': No such file or directory` };
    if (seen.has(real))
      return { names, problem: `Could not open backing file: the backing chain loops back to '${path}'` };
    seen.add(real);
    let io: FileIO;
    try {
      io = await FileIO.open(path);
    } catch (err) {
      return { names, problem: `Could not open backing file: Could not open '${path}': ${(err as Error).message}` };
    }
    try {
      const head = await io.read(0, 8);
      const isQcow2 = head.length >= 8 && u32(head, 0) === C.QCOW2_MAGIC && u32(head, 4) >= 2;
      if (next.format !== undefined && next.format !== 'qcow2') return { names }; // raw and others: any bytes do
      if (!isQcow2) {
        if (next.format === 'qcow2')
          return { names, problem: `Could not open backing file: Image is not in qcow2 format` };
        return { names }; // probed as another format (usually raw)
      }
      // A backing layer is opened normally (read-only), snapshot table included.
      const img = await Qcow2Image.open(io, {});
      await img.readSnapshots();
      current = path;
      next = { name: img.header.backingFile, format: img.header.backingFormat };
    } catch (err) {
      const reason = err instanceof Qcow2FormatError ? err.qemuReason : (err as Error).message;
      return { names, problem: `Could not open backing file: ${reason}` };
    } finally {
      await io.close();
    }
  }
  return { names };
}
