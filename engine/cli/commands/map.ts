import { Option, type Command } from 'commander';
import { withChain, type ImageChain } from '../../image/backing-chain.js';
import {
  formatHumanEntry,
  formatJsonEntry,
  HUMAN_MAP_ERROR,
  HUMAN_MAP_HEADER,
  mergedEntries,
} from '../../image/map.js';

// `qcow2-doctor map`: the guest ranges of an image and where they live, as `qemu-img map` prints them.
export function register(program: Command): void {
  program
    .command('map')
    .description('show where each guest range of an image lives (as qemu-img map; read-only)')
    .addOption(new Option('--output <format>', 'output format').choices(['human', 'json']).default('human'))
    .addOption(new Option('-f, --format <format>', 'image format (default: probed)').choices(['qcow2', 'raw']))
    .argument('<image>', 'image file (its backing chain is opened too)')
    .addHelpText(
      'after',
      '\nExamples:\n  qcow2-doctor map disk.qcow2\n  qcow2-doctor map --output=json overlay.qcow2\n',
    )
    .action(async (image: string, o: { output: 'human' | 'json'; format?: 'qcow2' | 'raw' }) => {
      await withChain(image, o.format ? { format: o.format } : {}, async (chain) => {
        // Printed as the entries come, like qemu-img: a huge map never sits in memory.
        const out = new BufferedOut();
        try {
          await printMap(chain, o.output, out);
        } catch (e) {
          if (!(e instanceof StdoutClosed)) throw e; // `| head`: the reader left, nothing to say
        }
      });
    });
}

async function printMap(chain: ImageChain, output: 'human' | 'json', out: BufferedOut): Promise<void> {
  if (output === 'json') {
    let first = true;
    await out.write('[');
    for await (const e of mergedEntries(chain, 'json')) {
      await out.write(`${first ? '' : ',\n'}${formatJsonEntry(e)}`);
      first = false;
    }
    await out.write(']\n');
    await out.end();
    return;
  }
  await out.write(HUMAN_MAP_HEADER);
  for await (const e of mergedEntries(chain, 'human')) {
    const line = formatHumanEntry(e);
    if (line === undefined) {
      // QEMU prints what precedes the first range without a host offset, then refuses.
      await out.end();
      throw new Error(HUMAN_MAP_ERROR);
    }
    await out.write(line);
  }
  await out.end();
}

/** The reader of stdout went away (EPIPE). */
class StdoutClosed extends Error {}

/** stdout in 64 KiB pieces, waiting for the pipe to drain (large maps through `| head`). */
class BufferedOut {
  private buf = '';
  private closed = false;

  constructor() {
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
      this.closed = true;
      this.release?.();
    });
  }

  private release: (() => void) | undefined;

  /** Resolves at once unless 64 KiB are waiting; then when stdout took them (back-pressure). */
  async write(s: string): Promise<void> {
    if (this.closed) throw new StdoutClosed();
    this.buf += s;
    if (this.buf.length >= 65536) await this.flush();
  }

  private pending: Promise<void> = Promise.resolve();

  private flush(): Promise<void> {
    const chunk = this.buf;
    this.buf = '';
    if (!chunk) return this.pending;
    this.pending = this.pending.then(
      () =>
        new Promise<void>((resolve) => {
          if (this.closed || process.stdout.write(chunk)) resolve();
          else {
            this.release = resolve;
            process.stdout.once('drain', () => resolve());
          }
        }),
    );
    return this.pending;
  }

  async end(): Promise<void> {
    await this.flush();
    if (this.closed) throw new StdoutClosed();
  }
}
