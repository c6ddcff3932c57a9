// `--out FILE`: one JSON line per judged case, appended as each case ends, so an interrupted run
// loses at most the cases in flight. Run again with the same FILE, seed and bases, the campaign
// skips the cases the file already holds and its table counts them (a resumed run).
import { appendFileSync, existsSync, readFileSync, truncateSync } from 'node:fs';
import type { CaseResult } from './judge.js';

interface Line extends CaseResult {
  seed: number;
  bases: string;
}

/** The cases `file` holds for this seed and selection of bases (none when it does not exist). */
export function readOut(file: string, seed: number, bases: string[]): CaseResult[] {
  if (!existsSync(file)) return [];
  const want = bases.join(',');
  const bytes = readFileSync(file);
  // A last line without its newline was cut short by an interrupt: drop it, and judge that case again.
  const end = bytes.lastIndexOf(10) + 1;
  if (end < bytes.length) truncateSync(file, end);
  const lines = bytes.subarray(0, end).toString('utf8').split('\n');
  const out: CaseResult[] = [];
  for (let n = 0; n < lines.length; n++) {
    const text = lines[n]!.trim();
    if (!text) continue;
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch {
      throw new Error(`--out ${file}: line ${n + 1} is not JSON`);
    }
    if (line.seed !== seed || line.bases !== want)
      throw new Error(
        `--out ${file}: line ${n + 1} is a case of seed ${line.seed}, bases '${line.bases}' (this run: seed ${seed}, bases '${want}')`,
      );
    const { seed: _s, bases: _b, ...result } = line;
    out.push(result);
  }
  return out;
}

export function appendOut(file: string, seed: number, bases: string[], r: CaseResult): void {
  appendFileSync(file, `${JSON.stringify({ seed, bases: bases.join(','), ...r })}\n`);
}
