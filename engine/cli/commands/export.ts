import { fstatSync, statSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { chainFiles, withChain, type ImageChain } from '../../image/backing-chain.js';
import { exportRaw } from '../../image/export.js';
import { stat } from 'node:fs/promises';
import { FileIO } from '../../io/file-io.js';
import { createOutputFile } from '../../io/output-file.js';
import type { ProgressSink } from '../../base/task-control.js';

// `qcow2-doctor export`: the guest disk (or an internal snapshot of it) as a raw file.
export function register(program: Command): void {
  program
    .command('export')
    .description('write the guest disk as a raw file, sparse where the guest reads zeros (read-only on IMAGE)')
    .option('-s, --snapshot <id-or-name>', 'export an internal snapshot instead of the current state')
    .addOption(new Option('-f, --format <format>', 'image format (default: probed)').choices(['qcow2', 'raw']))
    .argument('<image>', 'image file (its backing chain is read too)')
    .argument('<out>', 'raw output file (created or overwritten)')
    .addHelpText(
      'after',
      '\nExamples:\n  qcow2-doctor export disk.qcow2 disk.raw\n  qcow2-doctor export --snapshot before-upgrade disk.qcow2 old.raw\n',
    )
    .action(async (image: string, outPath: string, o: { snapshot?: string; format?: 'qcow2' | 'raw' }) => {
      await withChain(image, o.format ? { format: o.format } : {}, async (chain) => {
        refuseOverwritingInput(chain, outPath);
        // A device or pipe is written where it is; a file is created afresh, never through a link.
        const existing = await stat(outPath).catch(() => undefined);
        const file = existing && !existing.isFile() ? undefined : await createOutputFile(outPath, { replace: true });
        const out = file ? file.io : await FileIO.open(outPath, { create: true });
        let ok = false;
        try {
          const st = fstatSync(out.fd);
          // Block devices take positional writes but have no holes; pipes and terminals cannot seek.
          const dense = !st.isFile();
          const stream = st.isFIFO() || st.isSocket() || st.isCharacterDevice();
          const progress = process.stderr.isTTY ? progressBar() : undefined;
          await exportRaw(chain, out, { snapshot: o.snapshot, dense, stream, progress });
          progress?.({ fraction: 1, stage: 'done' });
          // A new file is made durable before it takes its name; a device is left to the page cache.
          ok = true;
        } finally {
          if (!file) await out.close();
          else if (ok) await file.commit();
          else await file.discard();
        }
      });
    });
}

/** Opening OUT truncates it: never when it is one of the files the export reads. */
function refuseOverwritingInput(chain: ImageChain, outPath: string): void {
  let out;
  try {
    out = statSync(outPath);
  } catch {
    return; // does not exist yet
  }
  if (!out.isFile()) return;
  for (const f of chainFiles(chain)) {
    try {
      const s = statSync(f);
      if (s.dev === out.dev && s.ino === out.ino)
        throw new Error(`refusing to export into '${outPath}': it is '${f}', which the export reads`);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith('refusing')) throw e;
    }
  }
}

/** A one-line progress bar on stderr, redrawn at most every 100 ms. */
function progressBar(): ProgressSink {
  let last = -1;
  let lastTime = 0;
  return ({ fraction, stage }) => {
    const pct = Math.floor(fraction * 100);
    const now = Date.now();
    const done = stage === 'done';
    if (!done && (pct === last || now - lastTime < 100)) return;
    last = pct;
    lastTime = now;
    const width = 40;
    const filled = Math.round(fraction * width);
    // qemu-img convert -p's "(NN.NN/100%)", followed by a bar.
    process.stderr.write(
      `\r    (${(fraction * 100).toFixed(2).padStart(6)}/100%) [${'#'.repeat(filled)}${' '.repeat(width - filled)}]${done ? '\n' : ''}`,
    );
  };
}
