// Run our checker in-process the way the CLI does, and put its verdict in qemu-img's terms.
import { checkFile } from '../../engine/check/index.js';
import type { CheckOptions, CheckResult } from '../../engine/check/types.js';
import { Qcow2FormatError } from '../../engine/base/errors.js';

export interface OurCheck {
  result?: CheckResult;
  /** Per-problem lines as qemu-img prints them on stderr (QEMU's own "qemu-img: " prefixes kept). */
  lines: string[];
  exit: number;
  openError?: string;
}

export async function ourCheck(file: string, opts: CheckOptions = {}): Promise<OurCheck> {
  const lines: string[] = [];
  try {
    const result = await checkFile(file, { ...opts, onMessage: (l) => lines.push(l) });
    const c = result.counters;
    const exit = result.failed !== undefined || c.checkErrors ? 1 : c.corruptions ? 2 : c.leaks ? 3 : 0;
    return { result, lines, exit };
  } catch (e) {
    if (e instanceof Qcow2FormatError) return { lines, exit: 1, openError: e.message };
    throw e;
  }
}

/** QEMU's stderr without qemu-img's own closing lines and open-time warnings (not per-problem lines). */
export function qemuProblemLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter(
      (l) =>
        l !== '' &&
        !l.startsWith('qemu-img: Check failed') &&
        !l.startsWith('qemu-img: Could not open') &&
        !l.startsWith('qemu-img: warning:') &&
        !l.startsWith('Some clusters may be leaked'),
    );
}

/** Our lines without the open-time warnings (compared byte for byte by the CLI tests instead). */
export function ourProblemLines(lines: string[]): string[] {
  return lines.filter((l) => !l.startsWith('qemu-img: warning:') && !l.startsWith('Some clusters may be leaked'));
}

/** QEMU's JSON counters in our names. */
export function countersFromQemuJson(j: Record<string, unknown>): Record<string, number> {
  const n = (k: string) => (typeof j[k] === 'number' ? (j[k] as number) : 0);
  return {
    checkErrors: n('check-errors'),
    corruptions: n('corruptions'),
    leaks: n('leaks'),
    imageEndOffset: n('image-end-offset'),
    totalClusters: n('total-clusters'),
    allocatedClusters: n('allocated-clusters'),
    fragmentedClusters: n('fragmented-clusters'),
    compressedClusters: n('compressed-clusters'),
  };
}
