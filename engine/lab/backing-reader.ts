// Guest contents of a backing file, for reading crash states of an overlay: the backing file is
// not part of the log (QEMU writes only to the image being logged), so it is read as it is now,
// its own chain opened by the one chain follower (image/backing-chain.ts).
import { type ImageChain, type OpenChainOptions, openChain } from '../image/backing-chain.js';
import { GuestReader } from '../image/guest-reader.js';
import { resolveRelativeTo } from '../image/paths.js';
import type { BackingGuest } from '../write/writer.js';

/** Opens the backing file an image names (relative to `overlayPath`), once per name; closes them all at the end. */
export class BackingReaders {
  private readonly open = new Map<string, Promise<BackingGuest | undefined>>();
  private readonly chains: ImageChain[] = [];

  constructor(
    private readonly overlayPath: string,
    private readonly maxDepth = 8,
  ) {}

  /** The guest reader for `name` as recorded in a header (format from the header, else probed). */
  reader(name: string, format?: string): Promise<BackingGuest | undefined> {
    const path = resolveRelativeTo(this.overlayPath, name);
    const key = `${format ?? ''}:${path}`;
    let r = this.open.get(key);
    if (!r) {
      r = this.openBacking(path, format);
      this.open.set(key, r);
    }
    return r;
  }

  private async openBacking(path: string, format: string | undefined): Promise<BackingGuest> {
    const given: OpenChainOptions = format === 'qcow2' || format === 'raw' ? { format } : {};
    const chain = await openChain(path, { ...given, maxDepth: this.maxDepth });
    this.chains.push(chain);
    const guest = await GuestReader.open(chain);
    return { virtualSize: guest.size, read: (offset, length) => guest.read(offset, length) };
  }

  async close(): Promise<void> {
    for (const c of this.chains.splice(0)) await c.close().catch(() => undefined);
  }
}
