import { Option, type Command } from 'commander';
import { collectImageInfo } from '../../image/info-file.js';
import { renderInfoHuman, renderInfoJson } from '../../report/info-render.js';

// `qcow2-doctor info`: what `qemu-img info` prints, in the same format (JSON key order included).
export function register(program: Command): void {
  program
    .command('info')
    .description("show an image's metadata, as qemu-img info does (read-only)")
    .addOption(new Option('--output <format>', 'output format').choices(['human', 'json']).default('human'))
    .option('--backing-chain', 'show every layer of the backing chain, top first')
    .addOption(new Option('-f, --format <format>', 'image format (default: probed)').choices(['qcow2', 'raw']))
    .argument('<image>', 'image file')
    .addHelpText(
      'after',
      '\nExamples:\n  qcow2-doctor info disk.qcow2\n  qcow2-doctor info --output=json --backing-chain top.qcow2\n',
    )
    .action(async (image: string, o: { output: 'human' | 'json'; backingChain?: boolean; format?: string }) => {
      const infos = await collectImageInfo(image, {
        backingChain: o.backingChain === true,
        ...(o.format ? { format: o.format } : {}),
      });
      for (const i of infos) for (const w of i.warnings) process.stderr.write(`qcow2-doctor: warning: ${w}\n`);
      const chain = o.backingChain === true;
      const text =
        o.output === 'json' ? renderInfoJson(chain ? infos : infos[0]!) : renderInfoHuman(chain ? infos : infos[0]!);
      process.stdout.write(text);
    });
}
