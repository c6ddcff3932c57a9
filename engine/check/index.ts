// The checker's entry points. PLACEHOLDER signatures: the checker work replaces the bodies.
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { CheckOptions, CheckResult } from './types.js';

/** Check an opened image as `qemu-img check` does (plus our extra diagnostics). */
export async function checkImage(image: Qcow2Image, opts: CheckOptions = {}): Promise<CheckResult> {
  void image;
  void opts;
  throw new Error('checker not implemented yet');
}

/** Open `path` read-only in check mode and check it. */
export async function checkFile(path: string, opts: CheckOptions = {}): Promise<CheckResult> {
  void path;
  void opts;
  throw new Error('checker not implemented yet');
}
