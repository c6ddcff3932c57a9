/**
 * Colours of the maps and the order in which roles win when several clusters share one pixel
 * (zoomed out, the most telling role of a block is shown: damage first, then metadata, then data).
 */
import { GUEST_STATE_NAMES, HOST_ROLE_NAMES } from '../../../engine/contract/roles.js';

export interface Palette {
  /** Display names by code. */
  names: Record<number, string>;
  /** CSS colour by code. */
  colors: string[];
  /** Codes from most to least important (what a zoomed-out pixel shows). */
  priority: number[];
}

// Host roles, indexed by HostRole code. Chosen so that every pair stays apart (CIELAB ΔE ≥ 20) in
// normal vision and simulated protanopia and deuteranopia; test/renderer/palette.test.ts holds it to that.
// Families keep their meaning: metadata tables warm, refcounts violet, snapshots green, bitmaps
// magenta, data blue, leaked yellow, corrupt red, header white.
const HOST_COLORS = [
  '#2b2f36', // free
  '#f0f0f0', // header
  '#f2d7a6', // L1
  '#ff6e00', // L2
  '#c98fff', // refcount table
  '#4719b3', // refcount block
  '#60c3aa', // snapshot table
  '#00db49', // snapshot L1
  '#0abd60', // snapshot L2
  '#fbb1f7', // bitmap directory
  '#b42db4', // bitmap table
  '#b14356', // bitmap data
  '#0047fa', // data
  '#42a1ae', // compressed
  '#ffff29', // leaked
  '#da0b12', // corrupt
  '#861313', // beyond end of file
  '#ebff8a', // encryption header
  '#4e5574', // preallocated zero
  '#5770ff', // snapshot-only data
];

export const HOST_PALETTE: Palette = {
  names: HOST_ROLE_NAMES,
  colors: HOST_COLORS,
  priority: [15, 16, 14, 1, 2, 4, 6, 9, 17, 3, 5, 7, 8, 10, 11, 13, 12, 19, 18, 0],
};

const GUEST_COLORS = [
  '#2b2f36', // unallocated
  '#6b7280', // zero
  '#0047fa', // data
  '#7fe0e0', // compressed
  '#c98fff', // from backing file
  '#ff9f1a', // partly allocated
  '#da0b12', // invalid
];

export const GUEST_PALETTE: Palette = {
  names: GUEST_STATE_NAMES,
  colors: GUEST_COLORS,
  priority: [6, 5, 3, 2, 4, 1, 0],
};

/** Packed little-endian RGBA (for a Uint32Array view of ImageData) of a #rrggbb colour. */
export function rgba32(css: string, alpha = 255): number {
  const n = parseInt(css.slice(1), 16);
  return ((alpha << 24) | ((n & 0xff) << 16) | (n & 0xff00) | ((n >> 16) & 0xff)) >>> 0;
}

/** Fallback colour for codes a newer engine adds that this palette does not know. */
export const UNKNOWN_COLOR = '#c0c0c0';

/**
 * Layers of a backing chain, by depth: the image's own data in the data blue, each backing file a
 * hue of its own (ΔE ≥ 20 apart from each other and from "reads as zeros", in CVD too; checked by
 * test/renderer/palette.test.ts). Deeper chains reuse the hues from the second one on.
 */
export const LAYER_COLORS = ['#0047fa', '#ff9f1a', '#00c2a0', '#c98fff', '#fff27a'];
/** Reads as zeros everywhere, and "from a backing file not opened here". */
export const LAYER_ZERO_COLOR = '#2b2f36';
export const LAYER_UNKNOWN_COLOR = '#f4f4f4';
const ORIGIN_ZERO_CODE = 0;
const ORIGIN_UNKNOWN_CODE = 255;

/** The palette of the guest map coloured by layer: origin code 1 + depth names its file. */
export function layerPalette(layers: { depth: number; name: string }[]): Palette {
  const names: Record<number, string> = {
    [ORIGIN_ZERO_CODE]: 'reads as zeros',
    [ORIGIN_UNKNOWN_CODE]: 'unknown (backing file not opened)',
  };
  const colors: string[] = [];
  colors[ORIGIN_ZERO_CODE] = LAYER_ZERO_COLOR;
  colors[ORIGIN_UNKNOWN_CODE] = LAYER_UNKNOWN_COLOR;
  for (const l of layers) {
    const code = 1 + l.depth;
    names[code] = l.depth === 0 ? `this image: ${l.name}` : `layer ${l.depth}: ${l.name}`;
    colors[code] =
      LAYER_COLORS[l.depth < LAYER_COLORS.length ? l.depth : 1 + ((l.depth - 1) % (LAYER_COLORS.length - 1))]!;
  }
  // Zoomed out, the image's own (usually few) clusters win, then each layer below, then unknown, then zeros.
  const priority = [...layers.map((l) => 1 + l.depth), ORIGIN_UNKNOWN_CODE, ORIGIN_ZERO_CODE];
  return { names, colors, priority };
}
