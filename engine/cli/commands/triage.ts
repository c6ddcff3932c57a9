import type { Command } from 'commander';
import { findImages } from '../../triage/find-images.js';
import { triageFiles } from '../../triage/run-triage.js';
import { triageExitCode, triageJson, triageTable } from '../../triage/render.js';
import type { ImageTriage } from '../../triage/types.js';

export function register(program: Command): void {
  program
    .command('triage')
    .description('check many images (files or folders, searched recursively) and print one verdict per image')
    .argument('<paths...>', 'image files and/or folders')
    .option('--output <format>', 'human (a table) or json (one JSON object per image and line)', 'human')
    .option('-j, --jobs <n>', 'images checked at once', '2')
    .option('--timeout <seconds>', 'give up on an image after this long (0: never)', '0')
    .action(async (paths: string[], o: { output: string; jobs: string; timeout: string }) => {
      if (o.output !== 'human' && o.output !== 'json')
        throw new Error(`--output must be human or json, not '${o.output}'`);
      const jobs = Number(o.jobs);
      if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64)
        throw new Error(`--jobs must be a whole number from 1 to 64, not '${o.jobs}'`);
      const timeout = Number(o.timeout);
      if (!Number.isFinite(timeout) || timeout < 0)
        throw new Error(`--timeout must be a number of seconds, not '${o.timeout}'`);

      const found = await findImages(paths);
      const done: Array<ImageTriage | undefined> = new Array(found.files.length);
      let printed = 0;
      let finished = 0;
      const progress = process.stderr.isTTY && o.output === 'human';
      const rows = await triageFiles(found.files, {
        concurrency: jobs,
        timeoutSeconds: timeout,
        onRow: (row, i) => {
          done[i] = row;
          finished++;
          if (progress) process.stderr.write(`\rchecked ${finished}/${found.files.length}`);
          // JSON lines come out in the order the images were given, as soon as they can.
          if (o.output === 'json') {
            while (printed < done.length && done[printed]) process.stdout.write(`${triageJson(done[printed++]!)}\n`);
          }
        },
      });
      if (progress) process.stderr.write('\r\x1b[K');
      if (o.output === 'human') process.stdout.write(triageTable(rows, found.skipped));
      process.exitCode = triageExitCode(rows);
    });
}
