// After a repair: is the guest disk still the same? Reads both guest views (the image before the
// repair — the original file for a repaired copy, or the repaired file with the undo journal's
// saved bytes laid back over it for an in-place repair — and the repaired image) and compares them.
import { formatBytes } from '../contract/units.js';
import { openInputFile } from '../io/input-file.js';
import type { PositionalIO } from '../io/positional-io.js';
import { openChain } from '../image/backing-chain.js';
import { GuestReader } from '../image/guest-reader.js';
import { OverlayIO } from '../repair/overlay-io.js';
import { readJournal } from '../repair/journal.js';
import type { CancelToken, ProgressSink } from '../base/task-control.js';

export interface GuestComparison {
  comparedBytes: number;
  differingBytes: number;
  /** Guest offset of the first differing byte. */
  firstDifference?: number;
  detail: string;
}

const CHUNK = 1 << 20;

/** The image at `path` as it was before the repair recorded in `journalPath`. */
async function beforeView(
  path: string,
  journalPath: string,
): Promise<{ io: PositionalIO; close: () => Promise<void> }> {
  const j = await readJournal(journalPath);
  const base = await openInputFile(path);
  const overlay = new OverlayIO(base, j.meta.originalLength);
  for (const r of j.meta.regions) {
    if (r.savedLength > 0) await overlay.write(r.offset, j.data.subarray(r.dataOffset, r.dataOffset + r.savedLength));
  }
  await overlay.truncate(j.meta.originalLength);
  return { io: overlay, close: () => base.close() };
}

export async function compareGuest(
  before: { path: string; journalPath?: string },
  afterPath: string,
  opts: { cancel?: CancelToken; progress?: ProgressSink } = {},
): Promise<GuestComparison> {
  const view = before.journalPath ? await beforeView(before.path, before.journalPath) : undefined;
  const a = await openChain(
    before.path,
    view ? { openFile: async (p) => (p === before.path ? view.io : openInputFile(p)) } : {},
  );
  try {
    const b = await openChain(afterPath, {});
    try {
      const ra = await GuestReader.open(a);
      const rb = await GuestReader.open(b);
      if (ra.size !== rb.size) {
        return {
          comparedBytes: 0,
          differingBytes: Math.max(ra.size, rb.size),
          detail: `the virtual disk size changed from ${ra.size} to ${rb.size} bytes`,
        };
      }
      let differing = 0;
      let first: number | undefined;
      for (let off = 0; off < ra.size; off += CHUNK) {
        opts.cancel?.throwIfCancelled();
        const len = Math.min(CHUNK, ra.size - off);
        const [x, y] = await Promise.all([ra.read(off, len), rb.read(off, len)]);
        for (let i = 0; i < len; i++) {
          if (x[i] !== y[i]) {
            differing++;
            first ??= off + i;
          }
        }
        opts.progress?.({ fraction: (off + len) / ra.size, stage: 'comparing guest data' });
      }
      const r: GuestComparison = {
        comparedBytes: ra.size,
        differingBytes: differing,
        detail:
          differing === 0
            ? `all ${formatBytes(ra.size)} of the virtual disk read the same before and after the repair`
            : `${differing} bytes of the virtual disk read differently after the repair (first at guest offset ${first})`,
      };
      if (first !== undefined) r.firstDifference = first;
      return r;
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
    await view?.close();
  }
}
