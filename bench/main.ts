// `npm run bench`: every timing goal of the project, measured side by side with QEMU on the same
// files and printed as ratios. Each area adds a module in bench/sections/ exporting
// `title` and `run(ctx)`; they run in file-name order. `npm run bench -- NAME` runs sections whose
// file name contains NAME.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

export interface BenchContext {
  /** Scratch directory for images (large; removed at the end). */
  dir: string;
  log: (line: string) => void;
}

export interface BenchSection {
  title: string;
  run(ctx: BenchContext): Promise<void>;
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const filter = process.argv.slice(2);
  const files = readdirSync(join(here, 'sections'))
    .filter((f) => f.endsWith('.js'))
    .sort()
    .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)));
  const dir = join(process.env.BENCH_DIR ?? tmpdir(), `qcow2-doctor-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    for (const f of files) {
      const mod = (await import(join(here, 'sections', f))) as BenchSection;
      console.log(`\n## ${mod.title}\n`);
      await mod.run({ dir, log: (l) => console.log(l) });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
