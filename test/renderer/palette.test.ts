// The map palettes: every role has its own colour, for people with normal colour vision and for the
// two common red-green deficiencies (simulated), and the app's verdict colours carry white text.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { HOST_ROLE_COUNT, HOST_ROLE_NAMES, HostRole } from '../../engine/contract/roles.js';
import {
  GUEST_PALETTE,
  HOST_PALETTE,
  LAYER_COLORS,
  LAYER_UNKNOWN_COLOR,
  LAYER_ZERO_COLOR,
  layerPalette,
} from '../../renderer/src/map/palette.js';
import { contrastRatio, deltaE, VISIONS } from '../../renderer/src/map/color-vision.js';

const MIN_DELTA_E = 20;

function closestPair(colors: string[], names: Record<number, string>) {
  let worst = { de: Number.POSITIVE_INFINITY, pair: '', vision: '' };
  for (let i = 0; i < colors.length; i++)
    for (let j = i + 1; j < colors.length; j++)
      for (const v of VISIONS) {
        const de = deltaE(colors[i]!, colors[j]!, v);
        if (de < worst.de) worst = { de, pair: `${names[i]} / ${names[j]}`, vision: v };
      }
  return worst;
}

describe('map palettes', () => {
  it('the colour vision model behaves: identical colours 0 apart, red/green close in deuteranopia only', () => {
    expect(deltaE('#3d7ee0', '#3d7ee0')).toBe(0);
    expect(deltaE('#000000', '#ffffff')).toBeCloseTo(100, 0);
    // A red and a green of the same lightness: far apart normally, close for a deuteranope.
    expect(deltaE('#d33f3f', '#5f8f00')).toBeGreaterThan(60);
    expect(deltaE('#d33f3f', '#5f8f00', 'deuteranopia')).toBeLessThan(25);
    expect(contrastRatio('#ffffff', '#000000')).toBeCloseTo(21, 5);
  });

  it(`every pair of host roles is at least ΔE ${MIN_DELTA_E} apart in normal, protan and deutan vision`, () => {
    expect(HOST_PALETTE.colors).toHaveLength(HOST_ROLE_COUNT);
    const worst = closestPair(HOST_PALETTE.colors, HOST_ROLE_NAMES);
    expect(worst.de, `${worst.pair} in ${worst.vision}`).toBeGreaterThanOrEqual(MIN_DELTA_E);
  });

  it('the pairs that were near-identical (header/leaked, L1/L2) now differ clearly', () => {
    const c = HOST_PALETTE.colors;
    for (const [a, b] of [
      [HostRole.Header, HostRole.Leaked],
      [HostRole.L1, HostRole.L2],
      [HostRole.Leaked, HostRole.Corrupt],
      [HostRole.Data, HostRole.Compressed],
    ] as const)
      for (const v of VISIONS) expect(deltaE(c[a]!, c[b]!, v), `${a}/${b} ${v}`).toBeGreaterThan(MIN_DELTA_E);
  });

  it(`every pair of guest states is at least ΔE ${MIN_DELTA_E} apart too`, () => {
    const worst = closestPair(GUEST_PALETTE.colors, GUEST_PALETTE.names);
    expect(worst.de, `${worst.pair} in ${worst.vision}`).toBeGreaterThanOrEqual(MIN_DELTA_E);
  });

  it(`the layers of a backing chain, "reads as zeros" and "unknown" are at least ΔE ${MIN_DELTA_E} apart`, () => {
    const colors = [LAYER_ZERO_COLOR, LAYER_UNKNOWN_COLOR, ...LAYER_COLORS];
    const names: Record<number, string> = Object.fromEntries(
      colors.map((_c, i) => [i, i === 0 ? 'zeros' : i === 1 ? 'unknown' : `layer ${i - 2}`]),
    );
    const worst = closestPair(colors, names);
    expect(worst.de, `${worst.pair} in ${worst.vision}`).toBeGreaterThanOrEqual(MIN_DELTA_E);
    // Every layer of a deep chain gets a colour and a name with its file.
    const p = layerPalette(Array.from({ length: 9 }, (_, d) => ({ depth: d, name: `f${d}.qcow2` })));
    for (let d = 0; d < 9; d++) {
      expect(p.colors[1 + d], `layer ${d}`).toMatch(/^#[0-9a-f]{6}$/);
      expect(p.names[1 + d]).toContain(`f${d}.qcow2`);
    }
    expect(p.colors[1]).not.toBe(p.colors[2]);
  });

  it('white text on every verdict colour of the app reaches 4.5:1 (WCAG AA)', () => {
    const css = readFileSync('renderer/src/app.css', 'utf8');
    for (const name of ['--v-ok', '--v-warn', '--v-bad', '--v-worse']) {
      const m = new RegExp(`${name}: (#[0-9a-f]{6})`).exec(css);
      expect(m, name).not.toBeNull();
      expect(contrastRatio('#ffffff', m![1]!), name).toBeGreaterThanOrEqual(4.5);
    }
  });
});
