// Check one image for triage and reduce the result to a row. Never throws: whatever goes wrong
// becomes the row's verdict and error, so one bad file cannot stop a triage of hundreds.
import { stat } from 'node:fs/promises';
import * as C from '../format/constants.js';
import { u32 } from '../format/bytes.js';
import { decodeHeader } from '../format/header.js';
import { openInputFile } from '../io/input-file.js';
import { checkFile } from '../check/index.js';
import type { CheckResult } from '../check/types.js';
import { CancelledError, Qcow2FormatError } from '../base/errors.js';
import type { CancelToken } from '../base/task-control.js';
import { openChain, type MayRead } from '../image/backing-chain.js';
import { contentSentence, guessContent } from './content-kind.js';
import { VERDICT_EXIT, type ImageTriage, type Verdict } from './types.js';

export async function triageImage(path: string, cancel?: CancelToken, mayRead?: MayRead): Promise<ImageTriage> {
  const t0 = performance.now();
  const row: ImageTriage = {
    path,
    verdict: 'unreadable',
    exitCode: 1,
    fileSize: 0,
    backingChain: [],
    findings: {},
    elapsed: 0,
  };
  const done = (verdict: Verdict, error?: string): ImageTriage => {
    row.verdict = verdict;
    row.exitCode = VERDICT_EXIT[verdict];
    if (error !== undefined) row.error = error;
    row.elapsed = (performance.now() - t0) / 1000;
    return row;
  };
  try {
    const st = await stat(path);
    if (!st.isFile()) return done('unreadable', `Could not open '${path}': not a regular file`);
    row.fileSize = st.size;

    // The header, read on its own: what QEMU's probe sees, and the flags the table shows.
    const first = await readStart(path);
    if (first.length < 8 || u32(first, 0) !== C.QCOW2_MAGIC) {
      // QEMU probes it as raw and cannot check it; say what it is: text, a raw disk, or a qcow2 whose header is gone.
      const guess = await guessContent(path);
      row.content = guess.kind;
      return done('not-qcow2', contentSentence(guess));
    }
    const version = u32(first, C.HDR.version);
    row.version = version;
    if (version < 2)
      return done('not-qcow2', `version ${version}: a qcow (version 1) image, which does not support checks`);
    try {
      const bits = u32(first, C.HDR.clusterBits);
      const cs = bits >= C.MIN_CLUSTER_BITS && bits <= C.MAX_CLUSTER_BITS ? 2 ** bits : first.length;
      const h = decodeHeader(first.subarray(0, Math.min(cs, first.length)), { checkMode: true });
      row.dirty = (h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
      row.corrupt = (h.incompatibleFeatures & C.INCOMPAT_CORRUPT) !== 0n;
      row.virtualSize = h.size;
      row.clusterSize = 2 ** h.clusterBits;
    } catch (err) {
      if (err instanceof Qcow2FormatError) return done('unreadable', `Could not open '${path}': ${err.qemuReason}`);
      throw err;
    }

    // QEMU opens the whole backing chain before checking; a missing layer fails the check.
    const chain = await backingChain(path, mayRead);
    row.backingChain = chain.names;
    if (chain.problem) return done('unreadable', `Could not open '${path}': ${chain.problem}`);

    let result: CheckResult;
    try {
      result = await checkFile(path, cancel ? { cancel } : {});
    } catch (err) {
      if (err instanceof Qcow2FormatError) return done('unreadable', `Could not open '${path}': ${err.qemuReason}`);
      throw err;
    }
    row.counters = result.counters;
    for (const a of result.anomalies) row.findings[a.kind] = (row.findings[a.kind] ?? 0) + a.count;
    const c = result.counters;
    if (result.failed !== undefined)
      return done(
        'unreadable',
        result.failedAtOpen ? `Could not open '${path}': ${result.failed}` : `Check failed: ${result.failed}`,
      );
    if (c.checkErrors > 0)
      return done('unreadable', `Check failed: ${c.checkErrors} internal errors occurred during the check`);
    if (c.corruptions > 0) return done('corrupt');
    if (c.leaks > 0) return done('leaks');
    return done('clean');
  } catch (err) {
    if (err instanceof CancelledError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return done('unreadable', `Could not open '${path}': No such file or directory`);
    if (e.code === 'EACCES') return done('unreadable', `Could not open '${path}': Permission denied`);
    // Swapped for a pipe, device or folder since the look-up: refused unread.
    if (e.code === 'EFTYPE' || e.code === 'EISDIR')
      return done('unreadable', `Could not open '${path}': not a regular file`);
    return done('unreadable', `internal error while checking: ${e.message}`);
  }
}

/** The first cluster (at most 2 MiB, the largest cluster size), or less at end of file. */
async function readStart(path: string): Promise<Uint8Array> {
  const io = await openInputFile(path, { syncReads: true });
  try {
    const head = await io.read(0, 32);
    const bits = head.length >= 24 ? u32(head, C.HDR.clusterBits) : 0;
    const want = bits >= C.MIN_CLUSTER_BITS && bits <= C.MAX_CLUSTER_BITS ? 2 ** bits : 4096;
    return await io.read(0, want);
  } finally {
    await io.close();
  }
}

/**
 * The backing chain as QEMU opens it for a check (every layer must open, snapshot tables
 * included): the names as each header records them, nearest first, and QEMU's reason when a layer
 * cannot be opened. A protocol name or a format QEMU reads and we do not ends the chain quietly:
 * the check itself never reads backing data.
 */
async function backingChain(path: string, mayRead?: MayRead): Promise<{ names: string[]; problem?: string }> {
  const names: string[] = [];
  let problem: string | undefined;
  let chain: Awaited<ReturnType<typeof openChain>>;
  try {
    chain = await openChain(path, { format: 'qcow2', noDataFile: true, partial: true, checkMode: true, mayRead });
  } catch (err) {
    // The top image itself: the check reports it in its own words.
    if (err instanceof Qcow2FormatError) return { names };
    return { names, problem: (err as Error).message };
  }
  try {
    for (const layer of chain.layers) {
      if (layer.depth > 0 && layer.image) {
        try {
          await layer.image.readSnapshots();
        } catch (err) {
          problem ??= `Could not open backing file: ${err instanceof Qcow2FormatError ? err.qemuReason : (err as Error).message}`;
        }
      }
      const name = layer.image?.header.backingFile;
      if (name !== undefined && name !== '') names.push(name);
    }
    const stop = chain.stoppedAt;
    if (stop && (stop.kind === 'unopenable' || stop.kind === 'not-allowed')) problem ??= stop.reason;
  } finally {
    await chain.close();
  }
  return problem === undefined ? { names } : { names, problem };
}
