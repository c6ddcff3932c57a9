import type { Command } from 'commander';
import { stripFile, type StripResult } from '../../strip/strip.js';
import { stripChain } from '../../strip/strip-chain.js';
import { META_KIND_LABELS, type MetaKind } from '../../strip/metadata-map.js';
import { formatBytes } from '../../contract/units.js';
import { LogRecording } from '../../lab/dm-log-recorder.js';

interface StripFlags {
  force?: boolean;
  output: string;
  withBacking?: boolean;
  recordLog?: string;
}

export function register(program: Command): void {
  program
    .command('strip')
    .description('write a metadata-only copy of IMAGE to OUT (guest data replaced by zeros, sparse) to send to support')
    .argument('<image>', 'the qcow2 image to strip (only read)')
    .argument('<out>', 'the copy to write (must not exist unless --force)')
    .option('--force', 'replace OUT if it already exists')
    .option('--with-backing', 'also strip every backing file, next to OUT under the names the chain uses')
    .option('--output <format>', 'human or json', 'human')
    .option('--record-log <log>', 'log every write to OUT (dm-log-writes) to LOG, with an empty LOG.base.qcow2')
    .action(async (image: string, out: string, o: StripFlags) => {
      if (o.output !== 'human' && o.output !== 'json')
        throw new Error(`--output must be human or json, not '${o.output}'`);
      if (o.recordLog !== undefined && o.withBacking)
        throw new Error('--record-log records one output file; it does not go with --with-backing');
      const rec = o.recordLog !== undefined ? new LogRecording(o.recordLog, false) : undefined;
      await rec?.refuseExisting();
      if (o.withBacking) {
        const c = await stripChain(image, out, { force: o.force === true });
        if (o.output === 'json') process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
        else {
          for (const l of c.layers)
            process.stdout.write(
              l.result
                ? human(l.source, l.out, l.result)
                : `Wrote ${l.out}: an empty (all-zero, sparse) stand-in for the raw backing file ${l.source}.\n`,
            );
          for (const n of c.notes) process.stdout.write(`Note: ${n}\n`);
        }
        return;
      }
      const r = await stripFile(image, out, { force: o.force === true, ...(rec ? { wrapOutput: rec.wrap } : {}) });
      await rec?.finish();
      process.stdout.write(
        o.output === 'json' ? `${JSON.stringify({ image, out, ...r }, null, 2)}\n` : human(image, out, r),
      );
      if (rec) process.stderr.write(`qcow2-doctor: ${rec.summary()}\n`);
    });
}

function human(image: string, out: string, r: StripResult): string {
  const lines = [`Wrote ${out}: a metadata-only copy of ${image}.`];
  lines.push(
    `Kept ${formatBytes(r.keptBytes)} of metadata at the same offsets; file length ${r.fileSize} bytes as before; every guest data cluster now reads as zeros.`,
  );
  if (r.headerRefusal) lines.push(`The header is refused (${r.headerRefusal}), so only the header was kept.`);
  for (const [kind, s] of Object.entries(r.structures) as Array<[MetaKind, { count: number; bytes: number }]>)
    lines.push(`  ${META_KIND_LABELS[kind]}: ${s.count} (${formatBytes(s.bytes)})`);
  if (r.notes.length) {
    lines.push('Notes:');
    for (const n of r.notes) lines.push(`  - ${n}`);
  }
  return `${lines.join('\n')}\n`;
}
