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

// Host roles, indexed by HostRole code.
const HOST_COLORS = [
  '#2b2f36', // free
  '#f2c14e', // header
  '#e07a1f', // L1
  '#f29e4c', // L2
  '#6c5ce7', // refcount table
  '#a29bfe', // refcount block
  '#00b894', // snapshot table
  '#1e9e7a', // snapshot L1
  '#55efc4', // snapshot L2
  '#fd79a8', // bitmap directory
  '#e84393', // bitmap table
  '#f7a6c8', // bitmap data
  '#3d7ee0', // data
  '#00cec9', // compressed
  '#ffd32a', // leaked
  '#ff3b30', // corrupt
  '#9b1c1c', // beyond end of file
  '#b8e994', // encryption header
  '#5f6b7a', // preallocated zero
  '#7aa6e8', // snapshot-only data
];

export const HOST_PALETTE: Palette = {
  names: HOST_ROLE_NAMES,
  colors: HOST_COLORS,
  priority: [15, 16, 14, 1, 2, 4, 6, 9, 17, 3, 5, 7, 8, 10, 11, 13, 12, 19, 18, 0],
};

const GUEST_COLORS = [
  '#2b2f36', // unallocated
  '#5f6b7a', // zero
  '#3d7ee0', // data
  '#00cec9', // compressed
  '#a29bfe', // from backing file
  '#f29e4c', // partly allocated
  '#ff3b30', // invalid
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
