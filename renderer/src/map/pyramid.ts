/**
 * The map's level-of-detail pyramid. Cells are laid out row-major, `cols` per row. Level 0 holds
 * one rank per cell (rank = position in the palette's priority list, reversed, so a larger rank
 * is more important); level k+1 holds the max over each 2×2 block of level k. A frame then reads
 * one byte per screen pixel from the level whose cells are about one pixel big: drawing cost
 * depends on the canvas size, never on the number of clusters (16.8 M clusters: ~22 MB in all).
 */
export const EMPTY = 0; // rank of "no cell here" (past the last cluster)

export interface Level {
  cols: number;
  rows: number;
  data: Uint8Array;
}

export interface Pyramid {
  count: number;
  cols: number;
  rows: number;
  levels: Level[];
  /** rank → code */
  codeOfRank: Uint8Array;
}

/** rank(code): 1..n by importance (0 is EMPTY); unknown codes rank just above the least important. */
export function rankTable(priority: number[]): { rankOf: Uint8Array; codeOfRank: Uint8Array } {
  const rankOf = new Uint8Array(256).fill(1);
  const codeOfRank = new Uint8Array(256);
  const n = priority.length;
  priority.forEach((code, i) => {
    rankOf[code] = n - i + 1;
    codeOfRank[n - i + 1] = code;
  });
  codeOfRank[1] = 255; // unknown codes
  return { rankOf, codeOfRank };
}

/**
 * Columns for `count` cells so that the whole map fills a view of this aspect (width / height) with
 * the largest cells: no island in a void. Among layouts within 8 % of the best, the roundest column
 * count wins (row offsets on the rulers then step evenly); past 64 columns, multiples of 16 only.
 */
export function layoutColumns(count: number, aspect: number): number {
  if (count <= 1) return 1;
  const a = Math.max(0.2, aspect);
  const cell = (c: number) => Math.min(a / c, 1 / Math.ceil(count / c));
  const est = Math.ceil(Math.sqrt(count * a));
  const step = est > 64 ? 16 : 1;
  const lo = Math.max(step, Math.floor(est / 2 / step) * step);
  const hi = Math.min(step === 1 ? count : Math.ceil(count / 16) * 16, est * 2 + step);
  let bestCell = 0;
  for (let c = lo; c <= hi; c += step) bestCell = Math.max(bestCell, cell(c));
  let pick = lo;
  let pickScore = -1;
  for (let c = lo; c <= hi; c += step) {
    const size = cell(c);
    if (size < bestCell * 0.92) continue;
    // Roundness: the largest power of two dividing c (capped), then the larger cell.
    const score = Math.min(c & -c, 64) * 10 + size / bestCell;
    if (score > pickScore) {
      pick = c;
      pickScore = score;
    }
  }
  return pick;
}

export function buildPyramid(codes: Uint8Array, cols: number, priority: number[]): Pyramid {
  const { rankOf, codeOfRank } = rankTable(priority);
  const count = codes.length;
  const rows = Math.max(1, Math.ceil(count / cols));
  const base = new Uint8Array(cols * rows);
  for (let i = 0; i < count; i++) base[i] = rankOf[codes[i]!]!;
  const levels: Level[] = [{ cols, rows, data: base }];
  let cur = levels[0]!;
  while (cur.cols > 1 || cur.rows > 1) {
    const nc = Math.ceil(cur.cols / 2);
    const nr = Math.ceil(cur.rows / 2);
    const next = new Uint8Array(nc * nr);
    const src = cur.data;
    const sc = cur.cols;
    for (let y = 0; y < nr; y++) {
      const r0 = 2 * y * sc;
      const r1 = 2 * y + 1 < cur.rows ? r0 + sc : -1;
      for (let x = 0; x < nc; x++) {
        const x0 = 2 * x;
        let m = src[r0 + x0]!;
        if (x0 + 1 < sc) m = Math.max(m, src[r0 + x0 + 1]!);
        if (r1 >= 0) {
          m = Math.max(m, src[r1 + x0]!);
          if (x0 + 1 < sc) m = Math.max(m, src[r1 + x0 + 1]!);
        }
        next[y * nc + x] = m;
      }
    }
    cur = { cols: nc, rows: nr, data: next };
    levels.push(cur);
  }
  return { count, cols, rows, levels, codeOfRank };
}

/** An overlay pyramid (e.g. anomaly severity 0..4 per cell), same layout, max-reduced. */
export function buildOverlay(
  count: number,
  cols: number,
  runs: { first: Float64Array; count: Float64Array; severity: Uint8Array },
): Pyramid {
  const codes = new Uint8Array(count);
  for (let i = 0; i < runs.first.length; i++) {
    const s = runs.severity[i]!;
    const a = Math.max(0, runs.first[i]!);
    const b = Math.min(count, a + runs.count[i]!);
    for (let c = a; c < b; c++) if (codes[c]! < s) codes[c] = s;
  }
  // Identity ranks: severity 0 (none) .. 4 (error), shifted by one so 0 stays EMPTY.
  return buildPyramid(codes, cols, [4, 3, 2, 1, 0]);
}
