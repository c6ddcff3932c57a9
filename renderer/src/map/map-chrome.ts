/**
 * What is drawn around and over the cluster cells: offset rulers (bytes and clusters) along the top
 * and left edges, labels inside cells when they are big enough to read, and the minimap (the whole
 * map, small, with the viewport outlined) when only part of the map is in view.
 */
import { formatBytes } from '../../../engine/contract/units.js';
import type { Pyramid } from './pyramid.js';

/** Ruler sizes in CSS pixels. */
export const RULER_TOP = 30;
export const RULER_LEFT = 92;
export const MINIMAP_MAX = { w: 180, h: 120 };

const NICE = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/** The smallest "nice" number of cells whose span is at least `minPx` device pixels. */
export function tickStep(scale: number, minPx: number): number {
  for (const n of NICE) if (n * scale >= minPx) return n;
  return NICE[NICE.length - 1]!;
}

export interface ChromeGeometry {
  /** Device pixels per cell, the view's top-left in cells, device pixel ratio, canvas size. */
  scale: number;
  ox: number;
  oy: number;
  dpr: number;
  width: number;
  height: number;
  left: number;
  top: number;
}

const hexOf = (n: number) => `0x${n.toString(16)}`;

/** Rulers: top = offset within a row (+clusters, +bytes); left = offset of the row's first cluster. */
export function drawRulers(ctx: CanvasRenderingContext2D, g: ChromeGeometry, p: Pyramid, unit: number): void {
  const { scale: s, dpr, left, top, width, height } = g;
  ctx.save();
  ctx.fillStyle = '#1d2026';
  ctx.fillRect(0, 0, width, top);
  ctx.fillRect(0, 0, left, height);
  ctx.strokeStyle = '#4a515c';
  ctx.fillStyle = '#c9ced6';
  ctx.lineWidth = dpr;
  ctx.font = `${10 * dpr}px ui-monospace, "DejaVu Sans Mono", monospace`;
  ctx.textBaseline = 'top';
  // Columns.
  const cstep = tickStep(s, 72 * dpr);
  const c0 = Math.max(0, Math.floor(g.ox / cstep) * cstep);
  for (let c = c0; c <= p.cols; c += cstep) {
    const x = left + (c - g.ox) * s;
    if (x < left - 1 || x > width) continue;
    ctx.beginPath();
    ctx.moveTo(x, top - 6 * dpr);
    ctx.lineTo(x, top);
    ctx.stroke();
    ctx.fillText(`+${c}`, x + 2 * dpr, 2 * dpr);
    if (unit) ctx.fillText(`+${formatBytes(c * unit)}`, x + 2 * dpr, 14 * dpr);
  }
  // Rows.
  const rstep = tickStep(s, (unit ? 26 : 14) * dpr);
  const r0 = Math.max(0, Math.floor(g.oy / rstep) * rstep);
  for (let r = r0; r < p.rows; r += rstep) {
    const y = top + (r - g.oy) * s;
    if (y < top - 1 || y > height) continue;
    ctx.beginPath();
    ctx.moveTo(left - 6 * dpr, y);
    ctx.lineTo(left, y);
    ctx.stroke();
    const cell = r * p.cols;
    ctx.fillText(`#${cell}`, 3 * dpr, y + 2 * dpr);
    if (unit) ctx.fillText(hexOf(cell * unit), 3 * dpr, y + 13 * dpr);
  }
  ctx.fillStyle = '#8b939e';
  ctx.fillText('cluster', 3 * dpr, 2 * dpr);
  if (unit) ctx.fillText('offset', 3 * dpr, 14 * dpr);
  ctx.restore();
}

/** Black or white, whichever reads better on a packed ABGR colour. */
function inkOn(c: number): string {
  const r = c & 0xff;
  const g = (c >>> 8) & 0xff;
  const b = (c >>> 16) & 0xff;
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? '#1a1a1a' : '#f2f2f2';
}

/** Cluster numbers (and role names when there is room) inside cells at high zoom. */
export function drawLabels(
  ctx: CanvasRenderingContext2D,
  g: ChromeGeometry,
  p: Pyramid,
  colorOf: (cell: number) => number,
  nameOf: (cell: number) => string,
): void {
  const { scale: s, dpr, left, top } = g;
  if (s < 40 * dpr) return;
  const x0 = Math.max(0, Math.floor(g.ox));
  const y0 = Math.max(0, Math.floor(g.oy));
  const x1 = Math.min(p.cols, Math.ceil(g.ox + (g.width - left) / s));
  const y1 = Math.min(p.rows, Math.ceil(g.oy + (g.height - top) / s));
  ctx.save();
  ctx.textBaseline = 'top';
  const fs = Math.min(12, Math.floor(s / dpr / 5)) * dpr;
  ctx.font = `${fs}px ui-monospace, "DejaVu Sans Mono", monospace`;
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) {
      const cell = y * p.cols + x;
      if (cell >= p.count) break;
      const px = left + (x - g.ox) * s + 3 * dpr;
      const py = top + (y - g.oy) * s + 3 * dpr;
      ctx.fillStyle = inkOn(colorOf(cell));
      ctx.fillText(String(cell), px, py, s - 6 * dpr);
      if (s >= 64 * dpr) ctx.fillText(nameOf(cell), px, py + fs + 2 * dpr, s - 6 * dpr);
    }
  ctx.restore();
}

export interface MinimapBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Where the minimap goes (device pixels): bottom-right of the map area, the map's aspect. */
export function minimapBox(g: ChromeGeometry, p: Pyramid): MinimapBox {
  const maxW = MINIMAP_MAX.w * g.dpr;
  const maxH = MINIMAP_MAX.h * g.dpr;
  const k = Math.min(maxW / p.cols, maxH / p.rows);
  const w = Math.max(8, Math.round(p.cols * k));
  const h = Math.max(8, Math.round(p.rows * k));
  const m = 8 * g.dpr;
  return { x: g.width - w - m, y: g.height - h - m, w, h };
}

/** The minimap's pixels, written into the frame buffer (packed ABGR), from a coarse pyramid level. */
export function paintMinimap(
  out: Uint32Array,
  stride: number,
  box: MinimapBox,
  p: Pyramid,
  colors: Uint32Array,
  bg: number,
): void {
  const perPx = Math.max(p.cols / box.w, p.rows / box.h);
  let L = 0;
  while (L + 1 < p.levels.length && 2 ** (L + 1) <= perPx) L++;
  const lvl = p.levels[L]!;
  const k = 2 ** L;
  for (let y = 0; y < box.h; y++) {
    const row = Math.floor(((y + 0.5) * p.rows) / box.h / k);
    const base = (box.y + y) * stride + box.x;
    for (let x = 0; x < box.w; x++) {
      const col = Math.floor(((x + 0.5) * p.cols) / box.w / k);
      const v = row < lvl.rows && col < lvl.cols ? lvl.data[row * lvl.cols + col]! : 0;
      out[base + x] = v ? colors[v]! : bg;
    }
  }
}

/** The minimap's frame and the viewport rectangle on it. */
export function strokeMinimap(ctx: CanvasRenderingContext2D, g: ChromeGeometry, p: Pyramid, box: MinimapBox): void {
  const kx = box.w / p.cols;
  const ky = box.h / p.rows;
  const vw = (g.width - g.left) / g.scale;
  const vh = (g.height - g.top) / g.scale;
  ctx.save();
  ctx.lineWidth = g.dpr;
  ctx.strokeStyle = '#9aa3ad';
  ctx.strokeRect(box.x - g.dpr, box.y - g.dpr, box.w + 2 * g.dpr, box.h + 2 * g.dpr);
  ctx.lineWidth = 2 * g.dpr;
  ctx.strokeStyle = '#ffffff';
  const x = box.x + Math.max(0, g.ox) * kx;
  const y = box.y + Math.max(0, g.oy) * ky;
  ctx.strokeRect(x, y, Math.max(3 * g.dpr, Math.min(box.w, vw * kx)), Math.max(3 * g.dpr, Math.min(box.h, vh * ky)));
  ctx.restore();
}
