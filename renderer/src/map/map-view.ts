/**
 * Draws a cluster map on a <canvas> from a Pyramid: continuous zoom (wheel, +/-), pan (drag,
 * arrows), hover and click (cell index), selection, anomaly overlay. Each frame writes one
 * ImageData of the canvas' size, sampling the pyramid level whose cells are ≈ one pixel, so a
 * frame costs O(pixels) whatever the number of clusters. No DOM node per cluster.
 */
import { EMPTY, type Pyramid } from './pyramid.js';
import { rgba32, UNKNOWN_COLOR, type Palette } from './palette.js';
import {
  drawLabels,
  drawRulers,
  type ChromeGeometry,
  type MinimapBox,
  minimapBox,
  paintMinimap,
  RULER_LEFT,
  RULER_TOP,
  strokeMinimap,
} from './map-chrome.js';

export interface MapViewEvents {
  hover(cell: number | null): void;
  select(cell: number): void;
  /** Fired after each frame with its drawing time (ms), for the bench. */
  frame?(ms: number): void;
}

export interface MapViewOptions {
  /** Bytes per cell (the rulers' byte offsets); 0: clusters only. */
  unit?: number;
  /** Short name of a cell's role/state (labels at high zoom). */
  nameOf?: (cell: number) => string;
}

const BG = rgba32('#14161a');

/** Anomaly stripes by overlay rank: info, warning, leak, error. */
export const OVERLAY_STRIPES: Record<number, string> = { 3: '#8ab4ff', 4: '#ff9f1a', 5: '#101010', 6: '#ffffff' };
const MAX_PX_PER_CELL = 96;

export class MapView {
  private ctx: CanvasRenderingContext2D;
  private image: ImageData | null = null;
  private colors = new Uint32Array(256);
  private overlayColors = new Uint32Array(256);
  /** Device pixels per cell. */
  scale = 1;
  /** Top-left corner of the view, in cells. */
  ox = 0;
  oy = 0;
  hovered: number | null = null;
  selected: number | null = null;
  private overlay: Pyramid | null = null;
  private palette: Palette | null = null;
  private highlight: number | null = null;
  private raf = 0;
  private dpr = 1;
  private drag: { x: number; y: number; ox: number; oy: number; moved: boolean } | null = null;
  private resizeObs: ResizeObserver;
  private disposed = false;
  /** Rulers' size in device pixels: the cells start right of and below them. */
  private left = 0;
  private top = 0;
  private minimap: MinimapBox | null = null;
  /** The whole map is shown (Fit): a resize fits again instead of keeping the old scale. */
  private fitted = true;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private pyramid: Pyramid,
    palette: Palette,
    private readonly events: MapViewEvents,
    private readonly opts: MapViewOptions = {},
  ) {
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('canvas 2D context unavailable');
    this.ctx = ctx;
    this.setPalette(palette);
    // Stripe colours by overlay rank (3 info, 4 warning, 5 leak, 6 error): chosen to contrast with
    // every role colour, including the red of 'corrupt' and the yellow of 'leaked'.
    for (const [rank, css] of Object.entries(OVERLAY_STRIPES)) this.overlayColors[Number(rank)] = rgba32(css);
    canvas.addEventListener('wheel', this.onWheel, { passive: false });
    canvas.addEventListener('pointerdown', this.onDown);
    canvas.addEventListener('pointermove', this.onMove);
    canvas.addEventListener('pointerup', this.onUp);
    canvas.addEventListener('pointerleave', this.onLeave);
    canvas.addEventListener('keydown', this.onKey);
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(canvas);
    this.resize();
    this.fit();
  }

  setPalette(p: Palette): void {
    this.palette = p;
    this.colors.fill(rgba32(UNKNOWN_COLOR));
    this.colors[EMPTY] = BG;
    for (let rank = 1; rank < 256; rank++) {
      const code = this.pyramid.codeOfRank[rank]!;
      if (rank === 1 && code === 255) continue;
      const css = p.colors[code];
      if (!css || !p.priority.includes(code)) continue;
      // With a highlighted role, every other role is drawn faded towards the background.
      this.colors[rank] = this.highlight === null || this.highlight === code ? rgba32(css) : fade(rgba32(css));
    }
    this.invalidate();
  }

  /** Emphasise one role/state code (null: all). */
  setHighlight(code: number | null): void {
    this.highlight = code;
    if (this.palette) this.setPalette(this.palette);
  }

  setOverlay(o: Pyramid | null): void {
    this.overlay = o;
    this.invalidate();
  }

  /** Canvas size in device pixels follows its CSS size. */
  resize(): void {
    this.dpr = globalThis.devicePixelRatio || 1;
    this.left = RULER_LEFT * this.dpr;
    this.top = RULER_TOP * this.dpr;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * this.dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * this.dpr));
    if (w !== this.canvas.width || h !== this.canvas.height) {
      const first = this.image === null;
      this.canvas.width = w;
      this.canvas.height = h;
      this.image = this.ctx.createImageData(w, h);
      if (first || this.fitted) this.fit();
      else this.clamp();
    }
    this.invalidate();
  }

  /** Map area in device pixels (the canvas less the rulers). */
  private get areaW(): number {
    return Math.max(1, this.canvas.width - this.left);
  }
  private get areaH(): number {
    return Math.max(1, this.canvas.height - this.top);
  }

  /** The scale at which the whole map fills the area (one dimension edge to edge). */
  private fitScale(): number {
    return Math.min(this.areaW / this.pyramid.cols, this.areaH / this.pyramid.rows);
  }

  private maxScale(): number {
    return Math.max(MAX_PX_PER_CELL * this.dpr, this.fitScale());
  }

  /**
   * Keep the map in view: against its rulers (top left) on an axis it does not fill, so what is
   * left over is one margin at the end, never a frame of void; never panned off into the void.
   */
  private clamp(): void {
    const vw = this.areaW / this.scale;
    const vh = this.areaH / this.scale;
    const { cols, rows } = this.pyramid;
    this.ox = vw >= cols ? 0 : Math.min(Math.max(this.ox, 0), cols - vw);
    this.oy = vh >= rows ? 0 : Math.min(Math.max(this.oy, 0), rows - vh);
  }

  /** Whole map in view. */
  fit(): void {
    this.fitted = true;
    this.scale = this.fitScale();
    this.clamp();
    this.invalidate();
  }

  /** Zoomed out no further than the whole map: no island in an empty field. */
  private minScale(): number {
    return this.fitScale();
  }

  /** Zoom by `factor` keeping the device-pixel point (px, py) fixed. */
  zoomAt(factor: number, px: number, py: number): void {
    const s = Math.min(this.maxScale(), Math.max(this.minScale(), this.scale * factor));
    this.fitted = s <= this.fitScale();
    const ax = px - this.left;
    const ay = py - this.top;
    const cx = this.ox + ax / this.scale;
    const cy = this.oy + ay / this.scale;
    this.scale = s;
    this.ox = cx - ax / s;
    this.oy = cy - ay / s;
    this.clamp();
    this.invalidate();
  }

  panBy(dxPx: number, dyPx: number): void {
    this.ox -= dxPx / this.scale;
    this.oy -= dyPx / this.scale;
    this.clamp();
    this.invalidate();
  }

  /** Frame a cell: zoom so it is at least `minPx` CSS pixels wide, centre it as far as the map allows. */
  reveal(cell: number, minPx = 24): void {
    const { cols } = this.pyramid;
    this.scale = Math.min(this.maxScale(), Math.max(this.scale, minPx * this.dpr, this.fitScale()));
    this.fitted = this.scale <= this.fitScale();
    const x = cell % cols;
    const y = Math.floor(cell / cols);
    this.ox = x + 0.5 - this.areaW / this.scale / 2;
    this.oy = y + 0.5 - this.areaH / this.scale / 2;
    this.clamp();
    this.invalidate();
  }

  /** Cell under a CSS-pixel point of the canvas, or null. */
  cellAt(cssX: number, cssY: number): number | null {
    const dx = cssX * this.dpr - this.left;
    const dy = cssY * this.dpr - this.top;
    if (dx < 0 || dy < 0 || this.inMinimap(cssX * this.dpr, cssY * this.dpr)) return null;
    const x = Math.floor(this.ox + dx / this.scale);
    const y = Math.floor(this.oy + dy / this.scale);
    if (x < 0 || y < 0 || x >= this.pyramid.cols || y >= this.pyramid.rows) return null;
    const i = y * this.pyramid.cols + x;
    return i < this.pyramid.count ? i : null;
  }

  /** CSS-pixel centre of a cell (tests and tooltips). */
  cellCenter(cell: number): { x: number; y: number } {
    const x = cell % this.pyramid.cols;
    const y = Math.floor(cell / this.pyramid.cols);
    return {
      x: ((x + 0.5 - this.ox) * this.scale + this.left) / this.dpr,
      y: ((y + 0.5 - this.oy) * this.scale + this.top) / this.dpr,
    };
  }

  private inMinimap(px: number, py: number): boolean {
    const b = this.minimap;
    return !!b && px >= b.x && py >= b.y && px < b.x + b.w && py < b.y + b.h;
  }

  /** Centre the view on the point of the minimap under (px, py) device pixels. */
  private jumpFromMinimap(px: number, py: number): void {
    const b = this.minimap!;
    const col = ((px - b.x) / b.w) * this.pyramid.cols;
    const row = ((py - b.y) / b.h) * this.pyramid.rows;
    this.ox = col - this.areaW / this.scale / 2;
    this.oy = row - this.areaH / this.scale / 2;
    this.clamp();
    this.invalidate();
  }

  private geometry(): ChromeGeometry {
    const { scale, ox, oy, dpr, left, top } = this;
    return { scale, ox, oy, dpr, left, top, width: this.canvas.width, height: this.canvas.height };
  }

  setSelected(cell: number | null): void {
    this.selected = cell;
    this.invalidate();
  }

  invalidate(): void {
    if (this.disposed || this.raf) return;
    this.raf = requestAnimationFrame(() => {
      this.raf = 0;
      this.draw();
    });
  }

  /** Draw one frame now. */
  draw(): void {
    const img = this.image;
    if (!img || this.disposed) return;
    const t0 = performance.now();
    const W = img.width;
    const H = img.height;
    const out = new Uint32Array(img.data.buffer);
    const s = this.scale;
    // Level whose cell is at least ~one device pixel.
    let L = 0;
    while (L + 1 < this.pyramid.levels.length && s * 2 ** (L + 1) <= 1) L++;
    const lvl = this.pyramid.levels[L]!;
    const ov = this.overlay?.levels[L];
    const k = 2 ** L;
    const colsL = lvl.cols;
    const rowsL = lvl.rows;
    // Per-column level index (or -1), and whether the column is on a cell border (grid at high zoom).
    const colIdx = new Int32Array(W);
    const colEdge = new Uint8Array(W);
    const grid = s >= 8;
    const left = this.left;
    const top = this.top;
    for (let x = 0; x < W; x++) {
      const c = this.ox + (x - left + 0.5) / s;
      const lx = Math.floor(c / k);
      colIdx[x] = x >= left && lx >= 0 && lx < colsL ? lx : -1;
      if (grid) colEdge[x] = Math.floor(this.ox + (x - left) / s) !== Math.floor(this.ox + (x - left + 1) / s) ? 1 : 0;
    }
    const colors = this.colors;
    const ocolors = this.overlayColors;
    const data = lvl.data;
    const odata = ov?.data;
    for (let y = 0; y < H; y++) {
      const r = this.oy + (y - top + 0.5) / s;
      const ly = Math.floor(r / k);
      const rowOut = y * W;
      if (y < top || ly < 0 || ly >= rowsL) {
        out.fill(BG, rowOut, rowOut + W);
        continue;
      }
      const base = ly * colsL;
      const rowEdge = grid && Math.floor(this.oy + (y - top) / s) !== Math.floor(this.oy + (y - top + 1) / s);
      for (let x = 0; x < W; x++) {
        const lx = colIdx[x]!;
        if (lx < 0) {
          out[rowOut + x] = BG;
          continue;
        }
        const idx = base + lx;
        let c = colors[data[idx]!]!;
        // Anomalies: diagonal stripes in the severity colour (visible at every zoom level).
        if (odata) {
          const o = odata[idx]!;
          if (o >= 3 && ((x + y) & 7) < 3) c = ocolors[o]!;
        }
        if (grid && (rowEdge || colEdge[x])) c = darken(c);
        out[rowOut + x] = c;
      }
    }
    const g = this.geometry();
    // The minimap, when part of the map is out of view.
    const whole = this.areaW / s >= this.pyramid.cols - 1e-6 && this.areaH / s >= this.pyramid.rows - 1e-6;
    this.minimap = whole ? null : minimapBox(g, this.pyramid);
    if (this.minimap) paintMinimap(out, W, this.minimap, this.pyramid, colors, BG);
    this.ctx.putImageData(img, 0, 0);
    const nameOf = this.opts.nameOf;
    if (nameOf) drawLabels(this.ctx, g, this.pyramid, (cell) => colors[this.pyramid.levels[0]!.data[cell]!]!, nameOf);
    drawRulers(this.ctx, g, this.pyramid, this.opts.unit ?? 0);
    if (this.minimap) strokeMinimap(this.ctx, g, this.pyramid, this.minimap);
    this.strokeCell(this.hovered, 'rgba(255,255,255,0.9)', 1);
    this.strokeCell(this.selected, '#ffffff', 2);
    this.events.frame?.(performance.now() - t0);
  }

  private strokeCell(cell: number | null, color: string, width: number): void {
    if (cell === null) return;
    const cols = this.pyramid.cols;
    const x = ((cell % cols) - this.ox) * this.scale + this.left;
    const y = (Math.floor(cell / cols) - this.oy) * this.scale + this.top;
    if (x + this.scale < this.left || y + this.scale < this.top) return;
    const sz = Math.max(this.scale, 6);
    const pad = (sz - this.scale) / 2;
    this.ctx.lineWidth = width * this.dpr;
    this.ctx.strokeStyle = color;
    this.ctx.strokeRect(x - pad, y - pad, sz, sz);
  }

  private onWheel = (e: WheelEvent): void => {
    e.preventDefault();
    const r = this.canvas.getBoundingClientRect();
    const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    this.zoomAt(factor, (e.clientX - r.left) * this.dpr, (e.clientY - r.top) * this.dpr);
  };

  private onDown = (e: PointerEvent): void => {
    this.canvas.focus();
    const r = this.canvas.getBoundingClientRect();
    const px = (e.clientX - r.left) * this.dpr;
    const py = (e.clientY - r.top) * this.dpr;
    if (this.inMinimap(px, py)) {
      this.jumpFromMinimap(px, py);
      return;
    }
    this.drag = { x: e.clientX, y: e.clientY, ox: this.ox, oy: this.oy, moved: false };
    this.canvas.setPointerCapture?.(e.pointerId);
  };

  private onMove = (e: PointerEvent): void => {
    const r = this.canvas.getBoundingClientRect();
    if (this.drag) {
      const dx = e.clientX - this.drag.x;
      const dy = e.clientY - this.drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) this.drag.moved = true;
      if (this.drag.moved) {
        this.ox = this.drag.ox - (dx * this.dpr) / this.scale;
        this.oy = this.drag.oy - (dy * this.dpr) / this.scale;
        this.clamp();
        this.invalidate();
        return;
      }
    }
    const cell = this.cellAt(e.clientX - r.left, e.clientY - r.top);
    if (cell !== this.hovered) {
      this.hovered = cell;
      this.invalidate();
      this.events.hover(cell);
    }
  };

  private onUp = (e: PointerEvent): void => {
    const d = this.drag;
    this.drag = null;
    if (d && !d.moved) {
      const r = this.canvas.getBoundingClientRect();
      const cell = this.cellAt(e.clientX - r.left, e.clientY - r.top);
      if (cell !== null) {
        this.setSelected(cell);
        this.events.select(cell);
      }
    }
  };

  private onLeave = (): void => {
    if (this.hovered !== null) {
      this.hovered = null;
      this.invalidate();
      this.events.hover(null);
    }
  };

  /** Keyboard: arrows move the selection (Shift: pan), +/- zoom, 0 fits, Home/End first/last cluster. */
  private onKey = (e: KeyboardEvent): void => {
    const cols = this.pyramid.cols;
    const n = this.pyramid.count;
    const step = (d: number): void => {
      const cur = this.selected ?? 0;
      const next = Math.max(0, Math.min(n - 1, cur + d));
      this.setSelected(next);
      this.keepVisible(next);
      this.events.select(next);
    };
    const panPx = 60 * this.dpr;
    switch (e.key) {
      case 'ArrowLeft':
        e.shiftKey ? this.panBy(panPx, 0) : step(-1);
        break;
      case 'ArrowRight':
        e.shiftKey ? this.panBy(-panPx, 0) : step(1);
        break;
      case 'ArrowUp':
        e.shiftKey ? this.panBy(0, panPx) : step(-cols);
        break;
      case 'ArrowDown':
        e.shiftKey ? this.panBy(0, -panPx) : step(cols);
        break;
      case 'Home':
        step(-n);
        break;
      case 'End':
        step(n);
        break;
      case '+':
      case '=':
        this.zoomAt(1.25, this.canvas.width / 2, this.canvas.height / 2);
        break;
      case '-':
      case '_':
        this.zoomAt(0.8, this.canvas.width / 2, this.canvas.height / 2);
        break;
      case '0':
        this.fit();
        break;
      default:
        return;
    }
    e.preventDefault();
  };

  private keepVisible(cell: number): void {
    const c = this.cellCenter(cell);
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (c.x < RULER_LEFT || c.y < RULER_TOP || c.x > w || c.y > h) this.reveal(cell, this.scale / this.dpr);
  }

  dispose(): void {
    this.disposed = true;
    if (this.raf) cancelAnimationFrame(this.raf);
    this.resizeObs.disconnect();
    this.canvas.removeEventListener('wheel', this.onWheel);
    this.canvas.removeEventListener('pointerdown', this.onDown);
    this.canvas.removeEventListener('pointermove', this.onMove);
    this.canvas.removeEventListener('pointerup', this.onUp);
    this.canvas.removeEventListener('pointerleave', this.onLeave);
    this.canvas.removeEventListener('keydown', this.onKey);
  }
}

/** Fade a packed ABGR colour to 20% over the map background. */
function fade(c: number): number {
  const mix = (a: number, b: number): number => Math.round(a * 0.2 + b * 0.8);
  const r = mix(c & 0xff, BG & 0xff);
  const g = mix((c >>> 8) & 0xff, (BG >>> 8) & 0xff);
  const b = mix((c >>> 16) & 0xff, (BG >>> 16) & 0xff);
  return ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** Darken a packed ABGR colour by about 35% (cell borders). */
function darken(c: number): number {
  const r = (c & 0xff) * 0.65;
  const g = ((c >>> 8) & 0xff) * 0.65;
  const b = ((c >>> 16) & 0xff) * 0.65;
  return ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0;
}
