import type { QemuCounters } from '../check/types.js';

/** One word for an image's state, chosen to match `qemu-img check`'s exit code. */
export type Verdict = 'clean' | 'leaks' | 'corrupt' | 'unreadable' | 'not-qcow2';

/** The exit code `qemu-img check` gives for each verdict (63: "format does not support checks"). */
export const VERDICT_EXIT: Record<Verdict, 0 | 1 | 2 | 3 | 63> = {
  clean: 0,
  leaks: 3,
  corrupt: 2,
  unreadable: 1,
  'not-qcow2': 63,
};

export const VERDICT_WORDS: Record<Verdict, string> = {
  clean: 'clean',
  leaks: 'leaks',
  corrupt: 'corrupt',
  unreadable: 'unreadable',
  'not-qcow2': 'not qcow2',
};

/** What triage learned about one image. Plain data: it crosses worker and process boundaries. */
export interface ImageTriage {
  path: string;
  verdict: Verdict;
  /** What `qemu-img check` would exit with. */
  exitCode: 0 | 1 | 2 | 3 | 63;
  /** The check's QEMU counters, when the check ran (also when it stopped early). */
  counters?: QemuCounters;
  /** For a file without a qcow2 header: what it is instead (not a disk image, a raw disk, a damaged qcow2). */
  content?: 'not-disk' | 'raw-disk' | 'damaged-header';
  /** Why the image is unreadable or not qcow2, or QEMU's "Check failed" reason. */
  error?: string;
  version?: number;
  dirty?: boolean;
  corrupt?: boolean;
  virtualSize?: number;
  clusterSize?: number;
  fileSize: number;
  /** Backing files, nearest first, as named in each layer's header. */
  backingChain: string[];
  /** Our findings summed per kind (clusters concerned), QEMU's and our extra ones. */
  findings: Record<string, number>;
  /** Seconds spent on this image. */
  elapsed: number;
}
