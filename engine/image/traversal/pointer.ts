// The checks every pointer gets before anything is read through it.
import type { PointerProblem } from './types.js';

/** QEMU's end-of-file rule: a range is refused when it ends a cluster or more past the end of the file. */
export function endsBeyondEof(offset: number, length: number, fileSize: number, clusterSize: number): boolean {
  return offset + length - fileSize >= clusterSize;
}

/** What is wrong with a pointer to a cluster-aligned structure of `length` bytes, if anything. */
export function tableProblem(
  offset: number,
  length: number,
  fileSize: number,
  clusterSize: number,
): PointerProblem | undefined {
  if (offset % clusterSize !== 0) return 'unaligned';
  if (length > 0 && endsBeyondEof(offset, length, fileSize, clusterSize)) return 'beyond-eof';
  return undefined;
}

/** Whether a table may be read at all: aligned and starting inside the file (the rest reads as zeros). */
export function readable(offset: number, length: number, fileSize: number, clusterSize: number): boolean {
  return length > 0 && offset % clusterSize === 0 && offset < fileSize && Number.isSafeInteger(offset + length);
}
