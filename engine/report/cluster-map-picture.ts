// A picture of the host cluster map for reports: one cell per cluster (or per group of clusters
// for big images, showing the most telling role of the group), in the app's colours.
import { HOST_ROLE_COUNT, HOST_ROLE_NAMES } from '../contract/roles.js';
import { encodePng } from './png.js';

/**
 * Colours by HostRole code: the same as the app's map (renderer/src/map/palette.ts, held there to
 * ΔE ≥ 20 between roles in normal and red-green deficient vision; a test keeps the two equal).
 */
export const REPORT_ROLE_COLORS = [
  '#2b2f36',
  '#f0f0f0',
  '#f2d7a6',
  '#ff6e00',
  '#c98fff',
  '#4719b3',
  '#60c3aa',
  '#00db49',
  '#0abd60',
  '#fbb1f7',
  '#b42db4',
  '#b14356',
  '#0047fa',
  '#42a1ae',
  '#ffff29',
  '#da0b12',
  '#861313',
  '#ebff8a',
  '#4e5574',
  '#5770ff',
];
/** Which role a shared cell shows: damage first, then metadata, then data (as the app does). */
const PRIORITY = [15, 16, 14, 1, 2, 4, 6, 9, 17, 3, 5, 7, 8, 10, 11, 13, 12, 19, 18, 0];
const RANK = (() => {
  const r = new Uint8Array(256).fill(255);
  PRIORITY.forEach((role, i) => (r[role] = i));
  return r;
})();
const UNKNOWN = '#c0c0c0';
const GAP = '#14161a';

export interface MapPicture {
  png: Uint8Array;
  width: number;
  height: number;
  /** Clusters per cell (1 when every cluster has its own cell). */
  clustersPerCell: number;
  /** Cells per row and each cell's size in pixels (the rulers of the report are laid out with them). */
  cols: number;
  cellPx: number;
  /** Clusters per role, for the legend (only roles present). */
  legend: Array<{ role: number; name: string; color: string; clusters: number }>;
}

const MAX_CELLS = 65536;
const MAX_COLS = 256;
const TARGET_WIDTH = 768;
const MAX_CELL_PX = 32;

/**
 * Cells per row: one row for a handful of clusters; otherwise about twice as wide as high, in
 * multiples of 8 so the row offsets step evenly (never a long thin strip).
 */
export function pictureColumns(cells: number): number {
  if (cells <= 16) return cells;
  const c = Math.ceil(Math.sqrt(cells * 2));
  return Math.min(MAX_COLS, Math.ceil(c / 8) * 8);
}

export function clusterMapPicture(roleMap: Uint8Array): MapPicture {
  const n = Math.max(1, roleMap.length);
  const per = Math.max(1, Math.ceil(n / MAX_CELLS));
  const cells = Math.ceil(n / per);
  const cols = pictureColumns(cells);
  const rows = Math.ceil(cells / cols);
  const cellPx = Math.max(2, Math.min(MAX_CELL_PX, Math.floor(TARGET_WIDTH / cols)));
  const gap = cellPx >= 6 ? 1 : 0;
  const width = cols * cellPx;
  const height = rows * cellPx;
  const rgb = new Uint8Array(width * height * 3);
  const gapRgb = hexRgb(GAP);
  for (let i = 0; i < rgb.length; i += 3) rgb.set(gapRgb, i);

  const counts = new Float64Array(256);
  for (let i = 0; i < roleMap.length; i++) counts[roleMap[i]!]!++;
  const colorOf = (role: number): [number, number, number] => hexRgb(REPORT_ROLE_COLORS[role] ?? UNKNOWN);
  for (let cell = 0; cell < cells; cell++) {
    let best = 255;
    let bestRank = 256;
    for (let i = cell * per; i < Math.min(roleMap.length, (cell + 1) * per); i++) {
      const role = roleMap[i]!;
      if (RANK[role]! < bestRank) {
        bestRank = RANK[role]!;
        best = role;
      }
    }
    if (roleMap.length === 0) best = 0;
    const c = colorOf(best);
    const x0 = (cell % cols) * cellPx;
    const y0 = Math.floor(cell / cols) * cellPx;
    for (let y = y0; y < y0 + cellPx - gap; y++) {
      for (let x = x0; x < x0 + cellPx - gap; x++) rgb.set(c, (y * width + x) * 3);
    }
  }
  const legend: MapPicture['legend'] = [];
  for (let role = 0; role < 256; role++) {
    if (counts[role]! > 0) {
      legend.push({
        role,
        name: HOST_ROLE_NAMES[role] ?? `role ${role}`,
        clusters: counts[role]!,
        color: role < HOST_ROLE_COUNT ? REPORT_ROLE_COLORS[role]! : UNKNOWN,
      });
    }
  }
  return { png: encodePng(width, height, rgb), width, height, clustersPerCell: per, cols, cellPx, legend };
}

function hexRgb(css: string): [number, number, number] {
  const v = parseInt(css.slice(1), 16);
  return [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
}
