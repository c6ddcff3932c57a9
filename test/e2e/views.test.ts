// Every view and every wizard step in Chromium, at 1440×900 and 1024×700: axe-core finds no serious
// or critical WCAG 2.1 AA violation, the focus lands on the new view's heading, and a screenshot of
// each goes to test-results/screenshots/. Also the map's framing (fit, clamp, rulers, minimap), the
// hex view (offset jump, entries named) and the triage view (kept results, filter, sort, export).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { createQcow2, qemuIo, qemuImg, readU64, tempDir, writeBytes } from '../helpers/qemu.js';
import { launchChromium, startServe, type Chromium, type Served } from './harness.js';
import { makeClean, makeDamaged, makeSnapshots } from './images.js';
import { axeViolations, screenshots } from './a11y.js';

const root = tempDir('q2d-views-');
let served: Served;
let browser: Chromium;

beforeAll(async () => {
  makeClean(root.dir);
  makeSnapshots(root.dir);
  makeDamaged(root.dir);
  // A bigger image: 4 KiB clusters, data spread out, so the map has more cells than fit at a readable size.
  const big = join(root.dir, 'big.qcow2');
  createQcow2(big, '256M', { cluster_size: 4096 });
  qemuIo(big, ['write -P 0x11 0 2M', 'write -P 0x22 100M 1M', 'write -P 0x33 200M 512k']);
  // Files without a qcow2 header, named like images: text, a raw disk, a qcow2 with its header zeroed.
  writeFileSync(join(root.dir, 'notes.qcow2'), 'not a disk image\n'.repeat(300));
  qemuImg('create', '-f', 'raw', join(root.dir, 'disk-raw.qcow2'), '4M');
  writeBytes(join(root.dir, 'disk-raw.qcow2'), 510, new Uint8Array([0x55, 0xaa]));
  const zeroed = join(root.dir, 'header-zeroed.qcow2');
  createQcow2(zeroed, '64M');
  qemuIo(zeroed, ['write -P 0x5a 0 1M']);
  writeBytes(zeroed, 0, new Uint8Array(512));
  // A backing chain: a base with 4 MiB of data, an overlay that rewrote 64 KiB of it and added 64 KiB of its own.
  const chainBase = join(root.dir, 'chain-base.qcow2');
  createQcow2(chainBase, '64M');
  qemuIo(chainBase, ['write -P 0x41 0 4M']);
  createQcow2(join(root.dir, 'overlay.qcow2'), '64M', {}, { file: 'chain-base.qcow2', format: 'qcow2' });
  qemuIo(join(root.dir, 'overlay.qcow2'), ['write -P 0x42 1M 64k', 'write -P 0x43 40M 64k']);
  [served, browser] = await Promise.all([startServe(root.dir), launchChromium({ width: 1440, height: 900 })]);
});

afterAll(async () => {
  await browser?.close();
  await served?.stop();
  root.cleanup();
});

async function newPage(): Promise<Page & { errors: string[] }> {
  const page = (await browser.context.newPage()) as Page & { errors: string[] };
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(served.url);
  return page;
}

/** axe over the page, then the screenshots; returns the violations for one expect per view. */
async function audit(page: Page, name: string): Promise<void> {
  const v = await axeViolations(page);
  expect(v, `${name}: ${JSON.stringify(v, null, 1)}`).toEqual([]);
  await screenshots(page, name);
}

const focusedHeading = (page: Page) =>
  page.evaluate(
    () => (document.activeElement as HTMLElement | null)?.dataset.testid ?? document.activeElement?.tagName,
  );

describe('every view, accessible and photographed', () => {
  it('Open, Overview, Cluster map, Findings, Guest map, and the error for a text file', async () => {
    const page = await newPage();
    await page.getByTestId('open-clean.qcow2').waitFor();
    await audit(page, 'open');
    await page.getByTestId('open-damaged.qcow2').click();
    await page.getByTestId('overview').waitFor();
    await expect.poll(() => page.getByTestId('ov-verdict').getAttribute('data-verdict')).toBe('corrupt');
    expect(await focusedHeading(page)).toBe('view-heading');
    expect(await page.getByTestId('view-heading').textContent()).toBe('Overview');
    await audit(page, 'overview-damaged');
    for (const [tab, name] of [
      ['host-map', 'cluster-map'],
      ['anomalies', 'findings'],
      ['guest-map', 'guest-map'],
    ] as const) {
      await page.getByTestId(`tab-${tab}`).click();
      await expect.poll(() => focusedHeading(page)).toBe('view-heading');
      if (tab === 'guest-map') await page.getByTestId('guest-legend').waitFor();
      await audit(page, name);
    }
    await page.getByTestId('tab-files').click();
    await page.getByTestId('open-notes.qcow2').click();
    const error = page.getByTestId('error');
    await expect.poll(() => error.textContent()).toContain('not a disk image (a text file)');
    expect(await page.getByTestId('error-salvage').count()).toBe(0); // nothing for salvage to find
    await audit(page, 'error-not-a-disk-image');
    await page.getByRole('button', { name: 'Dismiss' }).click();
    await page.getByTestId('open-header-zeroed.qcow2').click();
    await page.getByTestId('error-salvage').waitFor(); // a damaged qcow2 is offered salvage
    await audit(page, 'error-damaged-header');
    expect(page.errors).toEqual([]);
    await page.close();
  });

  it('the wizard, step by step, on a damaged image', async () => {
    const page = await newPage();
    await page.getByTestId('tab-wizard').click();
    await page.getByTestId('wizard-open-damaged.qcow2').waitFor();
    await audit(page, 'wizard-1-choose');
    await page.getByTestId('wizard-open-damaged.qcow2').click();
    await page.getByTestId('wizard-safety').waitFor();
    await audit(page, 'wizard-2-safety');
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-verdict').waitFor();
    await audit(page, 'wizard-4-explain');
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-action').waitFor();
    await audit(page, 'wizard-5-action');
    await page.getByTestId('wizard-action-all').check();
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-plan').waitFor();
    await audit(page, 'wizard-6-preview');
    await page.getByTestId('wizard-apply').click();
    await page.getByTestId('wizard-verified').waitFor({ timeout: 60_000 });
    await audit(page, 'wizard-8-verify');
    await page.getByTestId('wizard-to-report').click();
    await page.getByTestId('wizard-save-html').waitFor();
    await audit(page, 'wizard-9-report');
    expect(page.errors).toEqual([]);
    await page.close();
  });
});

describe('the guest map of a backing chain', () => {
  it("tells the layers apart: a track and a colour per file, the overlay's 2 clusters visible next to its base", async () => {
    const page = await newPage();
    await page.getByTestId('open-overlay.qcow2').click();
    await page.getByTestId('tab-guest-map').click();
    await page.getByTestId('layer-strips').waitFor();
    const track = (code: number) => page.getByTestId(`layer-track-${code}`);
    // Layer 0 (the overlay) provides 2 clusters, layer 1 (the base) the 64 - 1 it does not hide.
    expect(await track(1).getAttribute('data-clusters')).toBe('2');
    expect(await track(2).getAttribute('data-clusters')).toBe('63');
    expect(await track(1).textContent()).toContain('this image: overlay.qcow2');
    expect(await track(2).textContent()).toContain('layer 1: chain-base.qcow2');
    expect(await page.getByTestId('guest-legend-0').getAttribute('data-count')).toBe(String(1024 - 65));
    // The overlay's cluster at 40 MiB (0.1 % of the disk) is a mark of its own colour on its track.
    const painted = await track(1)
      .locator('canvas')
      .evaluate((c: HTMLCanvasElement) => {
        const g = c.getContext('2d')!;
        const x = Math.floor((640 / 1024) * c.width);
        const px = g.getImageData(x, Math.floor(c.height / 2), 2, 1).data;
        return [...px.slice(0, 3)];
      });
    expect(painted).toEqual([0x00, 0x47, 0xfa]);
    await audit(page, 'guest-map-layers');
    await page.getByTestId('guest-by-state').click();
    await page.getByTestId('guest-usage').waitFor();
    await audit(page, 'guest-map-states');
    expect(page.errors).toEqual([]);
    await page.close();
  });
});

describe('the cluster map and the hex view', () => {
  it('fills the canvas (no island), clamps panning, shows rulers and, zoomed in, a minimap', async () => {
    const page = await newPage();
    await page.getByTestId('open-clean.qcow2').click();
    await page.getByTestId('tab-host-map').click();
    await page.getByTestId('host-legend').waitFor();
    const geo = () =>
      page.evaluate(() => {
        const m = (
          globalThis as unknown as {
            __q2dMaps: Record<
              string,
              { view: { scale: number; ox: number; oy: number }; pyramid: { cols: number; rows: number } }
            >;
          }
        ).__q2dMaps.host!;
        const c = document.querySelector('[data-testid="canvas-host"]') as HTMLCanvasElement;
        return {
          scale: m.view.scale,
          ox: m.view.ox,
          oy: m.view.oy,
          cols: m.pyramid.cols,
          rows: m.pyramid.rows,
          w: c.width,
          h: c.height,
        };
      });
    const g = await geo();
    // One dimension edge to edge (rulers: 92 px left, 30 px top).
    const fillW = (g.cols * g.scale) / (g.w - 92);
    const fillH = (g.rows * g.scale) / (g.h - 30);
    expect(Math.max(fillW, fillH)).toBeCloseTo(1, 2);
    expect(Math.min(fillW, fillH)).toBeGreaterThan(0.5);
    // Zooming out further does nothing; dragging far away is clamped.
    await page.getByRole('button', { name: 'Zoom out' }).click();
    expect((await geo()).scale).toBeCloseTo(g.scale, 5);
    await audit(page, 'map-fit');
    await screenshots(page, 'map-fit');
    await page.close();
  });

  it('a large image: zoomed in there is a minimap, "show on map" frames the cluster with no empty space', async () => {
    const page = await newPage();
    await page.getByTestId('open-big.qcow2').click();
    await page.getByTestId('tab-host-map').click();
    await page.getByTestId('host-legend').waitFor();
    await page.getByTestId('jump-offset').fill('0x1f0000');
    await page.getByTestId('jump-go').click();
    await expect.poll(() => page.getByTestId('insp-offset').textContent()).toBe('0x1f0000');
    const g = await page.evaluate(() => {
      const m = (
        globalThis as unknown as {
          __q2dMaps: Record<
            string,
            { view: { scale: number; ox: number; oy: number }; pyramid: { cols: number; rows: number } }
          >;
        }
      ).__q2dMaps.host!;
      const c = document.querySelector('[data-testid="canvas-host"]') as HTMLCanvasElement;
      return {
        scale: m.view.scale,
        ox: m.view.ox,
        oy: m.view.oy,
        cols: m.pyramid.cols,
        rows: m.pyramid.rows,
        w: c.width,
        h: c.height,
      };
    });
    // The view lies inside the map on both axes where the map is larger than the view.
    const vw = (g.w - 92) / g.scale;
    const vh = (g.h - 30) / g.scale;
    if (vw < g.cols) expect(g.ox >= 0 && g.ox + vw <= g.cols + 1e-6).toBe(true);
    if (vh < g.rows) expect(g.oy >= 0 && g.oy + vh <= g.rows + 1e-6).toBe(true);
    expect(g.scale).toBeGreaterThanOrEqual(24);
    // The jumped-to byte is marked; an unknown offset is refused in words.
    expect(await page.locator('[data-testid="hex"] .mark').count()).toBe(1);
    await page.getByTestId('jump-offset').fill('0xffffffffff');
    await page.getByTestId('jump-go').click();
    await expect.poll(() => page.getByTestId('jump-error').textContent()).toContain('past the end of the file');
    await audit(page, 'map-zoomed-minimap');
    await page.close();
  });

  it('the hex view fits its panel at both sizes and names the L2 entry under the cursor', async () => {
    const page = await newPage();
    await page.getByTestId('open-clean.qcow2').click();
    await page.getByTestId('tab-host-map').click();
    await page.getByTestId('host-legend').waitFor();
    // The L2 table of clean.qcow2 (64 KiB clusters) is cluster 4 (its L1 entry 0 says 0x40000).
    const l2 = Number(readU64(join(root.dir, 'clean.qcow2'), 0x30000) & 0xfffffffffe00n);
    await page.getByTestId('jump-offset').fill(`0x${(l2 + 16 * 8).toString(16)}`);
    await page.getByTestId('jump-go').click();
    await expect.poll(() => page.getByTestId('insp-role').textContent()).toBe('L2 table');
    for (const size of [
      { width: 1440, height: 900 },
      { width: 1024, height: 700 },
    ]) {
      await page.setViewportSize(size);
      await page.waitForTimeout(150);
      const fits = await page.getByTestId('hex').evaluate((el) => el.scrollWidth <= el.clientWidth + 1);
      expect(fits, `hex view at ${size.width}px`).toBe(true);
    }
    // Guest cluster 16 of clean.qcow2 holds 0x22 data (written at 8M with 512k: guest clusters 128..135); entry 17 is empty.
    const cell = page.locator(`[data-testid="hex"] span[data-at="${l2 + 17 * 8 + 2}"]`).first();
    await cell.hover();
    await expect.poll(() => page.getByTestId('hex-entry').textContent()).toBe('L2[17] → guest 0x110000 · unallocated');
    await screenshots(page, 'hex-entry');
    await page.close();
  });
});

describe('triage view', () => {
  it('tells headerless files apart, filters, sorts, exports, and keeps its results for the session', async () => {
    const page = await newPage();
    await page.getByTestId('tab-triage').click();
    await page.getByTestId('triage-scan').click();
    await page.getByTestId('triage-table').waitFor({ timeout: 60_000 });
    const verdictOf = async (name: string) =>
      (
        await page
          .getByTestId('triage-row')
          .filter({ has: page.getByText(name, { exact: true }) })
          .getByTestId('triage-verdict')
          .textContent()
      )?.trim();
    expect(await verdictOf('notes.qcow2')).toBe('not a disk image');
    expect(await verdictOf('disk-raw.qcow2')).toBe('raw disk');
    expect(await verdictOf('header-zeroed.qcow2')).toBe('damaged qcow2 header (salvage)');
    expect(await verdictOf('clean.qcow2')).toBe('clean');
    expect(await verdictOf('damaged.qcow2')).toBe('corrupt');
    await audit(page, 'triage');
    // Earlier tests in this file may have left outputs in the folder: the count is what this scan found.
    const scanned = await page.getByTestId('triage-row').count();
    expect(scanned).toBeGreaterThanOrEqual(7);
    // Sort by file size, descending.
    await page.getByTestId('triage-sort-fileSize').click();
    await page.getByTestId('triage-sort-fileSize').click();
    const names = await page.getByTestId('triage-row').locator('td.name').allTextContents();
    const bySize = [...names].sort((a, b) => statSync(join(root.dir, b)).size - statSync(join(root.dir, a)).size);
    expect(names).toEqual(bySize);
    // Filter: only the corrupt ones.
    await page.getByTestId('triage-filter').selectOption('corrupt');
    expect(await page.getByTestId('triage-row').count()).toBe(1);
    // Export: the CSV has the rows shown, with the verdict words.
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('triage-export-csv').click()]);
    const csv = readFileSync((await dl.path())!, 'utf8');
    expect(csv.split('\r\n')[0]).toBe(
      'image,verdict,corruptions,leaks,dirty,corrupt_flag,virtual_size,file_size,backing_chain,seconds,summary',
    );
    expect(csv).toMatch(/\r\ndamaged\.qcow2,corrupt,1,2,/);
    await page.getByTestId('triage-filter').selectOption('all');
    const [html] = await Promise.all([page.waitForEvent('download'), page.getByTestId('triage-export-html').click()]);
    expect(readFileSync((await html.path())!, 'utf8')).toContain('<td>damaged qcow2 header (salvage)</td>');
    // Open a row, come back: the results are still there.
    await page
      .getByTestId('triage-row')
      .filter({ has: page.getByText('clean.qcow2', { exact: true }) })
      .getByTestId('triage-open')
      .click();
    await page.getByTestId('overview').waitFor();
    await page.getByTestId('tab-triage').click();
    expect(await page.getByTestId('triage-row').count()).toBe(scanned);
    // "Repair…" on a row starts the wizard on that image.
    await page
      .getByTestId('triage-row')
      .filter({ has: page.getByText('damaged.qcow2', { exact: true }) })
      .getByTestId('triage-repair')
      .click();
    await page.getByTestId('wizard-safety').waitFor();
    expect(await page.getByTestId('wizard-image').textContent()).toBe('damaged.qcow2');
    expect(page.errors).toEqual([]);
    await page.close();
  });
});
