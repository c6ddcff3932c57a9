import { Option, type Command } from 'commander';
import { withChain } from '../../image/backing-chain.js';
import { formatHuman, formatJson, mapEntries } from '../../image/map.js';

// `qcow2-doctor map`: the guest ranges of an image and where they live, as `qemu-img map` prints them.
export function register(program: Command): void {
  program
    .command('map')
    .description('show where each guest range of an image lives (as qemu-img map; read-only)')
    .addOption(new Option('--output <format>', 'output format').choices(['human', 'json']).default('human'))
    .addOption(new Option('-f, --format <format>', 'image format (default: probed)').choices(['qcow2', 'raw']))
    .argument('<image>', 'image file (its backing chain is opened too)')
    .addHelpText('after', '\nExamples:\n  qcow2-doctor map disk.qcow2\n  qcow2-doctor map --output=json overlay.qcow2\n')
    .action(async (image: string, o: { output: 'human' | 'json'; format?: 'qcow2' | 'raw' }) => {
      await withChain(image, o.format ? { format: o.format } : {}, async (chain) => {
        const entries = await mapEntries(chain, o.output);
        if (o.output === 'json') {
          process.stdout.write(formatJson(entries));
          return;
        }
        const { text, error } = formatHuman(entries);
        process.stdout.write(text);
        if (error) throw new Error(error);
      });
    });
}
