// Guest contents of a backing file, for reading crash states of an overlay: the backing file is
// not part of the log (QEMU writes only to the image being logged), so it is read as it is now.
import { readPadded } from '../io/positional-io.js';
import type { FileIO } from '../io/file-io.js';
import { openInputFile } from '../io/input-file.js';
import { resolveRelativeTo } from '../image/paths.js';
import { Qcow2Image } from '../image/qcow2-image.js';
import { type GuestReader, Qcow2Writer } from '../write/writer.js';

/** Opens the backing file an image names (relative to `overlayPath`), once per name; closes them all at the end. */
export class BackingReaders {
  private readonly open = new Map<string, Promise<GuestReader | undefined>>();
  private readonly files: FileIO[] = [];

  constructor(
    private readonly overlayPath: string,
    private readonly maxDepth = 8,
  ) {}

  /** The guest reader for `name` as recorded in a header (format from the header, else probed). */
  reader(name: string, format?: string): Promise<GuestReader | undefined> {
    const path = resolveRelativeTo(this.overlayPath, name);
    const key = `${format ?? ''}:${path}`;
    let r = this.open.get(key);
    if (!r) {
      r = this.openChain(path, format, 0);
      this.open.set(key, r);
    }
    return r;
  }

  private async openChain(path: string, format: string | undefined, depth: number): Promise<GuestReader | undefined> {
    if (depth >= this.maxDepth) throw new Error(`backing chain deeper than ${this.maxDepth} at '${path}'`);
    const io = await openInputFile(path);
    this.files.push(io);
    const magic = await readPadded(io, 0, 4);
    const isQcow2 = format === 'qcow2' || (format === undefined && Buffer.from(magic).toString('latin1') === 'QFI\xfb');
    if (!isQcow2) {
      const size = await io.size();
      return { virtualSize: size, read: (o, n) => readPadded(io, o, Math.max(0, Math.min(n, size - o))) };
    }
    const img = await Qcow2Image.open(io);
    const name = img.header.backingFile;
    const backing = name
      ? await this.openChain(resolveRelativeTo(path, name), img.header.backingFormat, depth + 1)
      : undefined;
    return Qcow2Writer.open(io, { readOnly: true, ...(backing ? { backing } : {}) });
  }

  async close(): Promise<void> {
    for (const f of this.files.splice(0)) await f.close().catch(() => undefined);
  }
}
