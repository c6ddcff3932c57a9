// `npm run lab` runs what package.json says after building the CLI: that command must start the real
// CLI and print the lab's table (it once ran a module that only exported main and printed nothing).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/qemu.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('npm run lab', () => {
  it('runs the CLI and prints the table, guest and ordering flushes apart', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const [build, command] = pkg.scripts.lab!.split(' && ');
    expect(build).toBe('npm run build:cli');
    // The CLI is built by `npm test` before the tests run: run the script's own command line.
    const r = run('sh', ['-c', `${command} --workload zero --budget 5 --subsets 2 --torn 1`], { cwd: ROOT });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/crash-consistency lab/);
    expect(r.stdout).toMatch(/workload\s+states\s+corruptions\s+data mismatches/);
    expect(r.stdout).toMatch(/guest flushes\s+ordering flushes\s+ordering\/1000 alloc/);
    // zero: 1 explicit guest flush plus the final one.
    expect(r.stdout).toMatch(/^zero\s+\d+\s+0\s+0\s+\d+\s+\d+\s+\d+\/\d+\s+\d+\s+2\s+\d+\s+\d+$/m);
  });
});
