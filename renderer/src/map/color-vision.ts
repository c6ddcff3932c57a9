/**
 * Colour distance as people see it: CIELAB ΔE (CIE76) between two sRGB colours, in normal vision and
 * in simulated protanopia and deuteranopia (Machado, Oliveira & Fernandes 2009, severity 1). Used to
 * hold the map palettes to distinct colours for everyone, and the WCAG contrast ratio for text.
 */
type Rgb = [number, number, number];

const PROTANOPIA = [
  [0.152286, 1.052583, -0.204868],
  [0.114503, 0.786281, 0.099216],
  [-0.003882, -0.048116, 1.051998],
];
const DEUTERANOPIA = [
  [0.367322, 0.860646, -0.227968],
  [0.280085, 0.672501, 0.047413],
  [-0.01182, 0.04294, 0.968881],
];

export type Vision = 'normal' | 'protanopia' | 'deuteranopia';
export const VISIONS: Vision[] = ['normal', 'protanopia', 'deuteranopia'];

const toLinear = (c: number): number => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);

function linearRgb(css: string): Rgb {
  const n = Number.parseInt(css.slice(1), 16);
  return [toLinear(((n >> 16) & 255) / 255), toLinear(((n >> 8) & 255) / 255), toLinear((n & 255) / 255)];
}

function simulate(rgb: Rgb, v: Vision): Rgb {
  if (v === 'normal') return rgb;
  const m = v === 'protanopia' ? PROTANOPIA : DEUTERANOPIA;
  const clamp = (x: number) => Math.min(1, Math.max(0, x));
  return [0, 1, 2].map((i) => clamp(m[i]![0]! * rgb[0] + m[i]![1]! * rgb[1] + m[i]![2]! * rgb[2])) as Rgb;
}

function lab([r, g, b]: Rgb): Rgb {
  const x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
  const y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  const z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
  const f = (t: number) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}

/** ΔE (CIE76) between two #rrggbb colours as seen with the given vision. */
export function deltaE(a: string, b: string, v: Vision = 'normal'): number {
  const p = lab(simulate(linearRgb(a), v));
  const q = lab(simulate(linearRgb(b), v));
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** WCAG 2.1 contrast ratio of two #rrggbb colours (1 to 21). */
export function contrastRatio(a: string, b: string): number {
  const lum = (css: string) => {
    const [r, g, bl] = linearRgb(css);
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}
