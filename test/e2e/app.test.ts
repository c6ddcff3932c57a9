// End to end in Debian's Chromium against the real `qcow2-doctor serve` on images made by
// qemu-img at test time: open, overview, map drawing (legend = engine), hover/click, an anomaly
// visible on the map, guest map → host file, and cancelling a long check. Screenshots go to
// test-results/e2e-*.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { tempDir } from '../helpers/qemu.js';
import { launchChromium, startServe, type Chromium, type Served } from './harness.js';
import { makeClean, makeDamaged, makeSnapshots } from './images.js';
import { checkFile } from '../../engine/check/index.js';
import { legendOf, trimRoleMap } from '../../engine/service/handlers/check.js';
import { HOST_ROLE_COUNT, HOST_ROLE_NAMES, HostRole } from '../../engine/contract/roles.js';
import { FileIO } from '../../engine/io/file-io.js';
import { Qcow2Image } from '../../engine/image/qcow2-image.js';
import { HOST_PALETTE } from '../../renderer/src/map/palette.js';
import { OVERLAY_STRIPES } from '../../renderer/src/map/map-view.js';

const root = tempDir('q2d-e2e-');
let served: Served;
let slow: Served;
let browser: Chromium;
let clean: string;
let snaps: string;
let damaged: string;
mkdirSync('test-results', { recursive: true });

beforeAll(async () => {
  clean = makeClean(root.dir);
  snaps = makeSnapshots(root.dir);
  damaged = makeDamaged(root.dir).file;
  writeFileSync(join(root.dir, 'notes.txt'), 'not a disk image\n'.repeat(300));
  [served, slow, browser] = await Promise.all([
    startServe(root.dir),
    startServe(root.dir, { QCOW2_DOCTOR_TEST_CHECK_DELAY_MS: '30000' }),
    launchChromium({ width: 1400, height: 900 }),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([served?.stop(), slow?.stop()]);
  root.cleanup();
});

async function openImage(name: string, s: Served = served): Promise<Page> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(s.url);
  await page.getByTestId(`open-${name}`).click();
  await page.getByTestId('overview').waitFor();
  (page as Page & { errors?: string[] }).errors = errors;
  return page;
}

const shot = (page: Page, name: string) => page.screenshot({ path: `test-results/e2e-${name}.png` });

/** Canvas pixels (RGBA hex strings) inside the cell's square, read from the map canvas. */
async function cellPixels(page: Page, cell: number): Promise<string[]> {
  return page.evaluate((c) => {
    const probe = (
      globalThis as unknown as {
        __q2dMaps: Record<string, { view: { cellCenter(n: number): { x: number; y: number }; scale: number } }>;
      }
    ).__q2dMaps.host!;
    const canvas = document.querySelector('[data-testid="canvas-host"]') as HTMLCanvasElement;
    const ctx = canvas.getContext('2d')!;
    const { x, y } = probe.view.cellCenter(c);
    const half = Math.max(1, Math.floor(probe.view.scale / 2) - 2);
    const img = ctx.getImageData(Math.round(x - half), Math.round(y - half), 2 * half, 2 * half).data;
    const out: string[] = [];
    for (let i = 0; i < img.length; i += 4)
      out.push(`#${[img[i], img[i + 1], img[i + 2]].map((v) => v!.toString(16).padStart(2, '0')).join('')}`);
    return out;
  }, cell);
}

/** Page coordinates of a host cell's centre. */
async function cellPoint(page: Page, cell: number, id = 'host'): Promise<{ x: number; y: number }> {
  const box = (await page.getByTestId(`canvas-${id}`).boundingBox())!;
  const c = await page.evaluate(
    ([n, i]) =>
      (
        globalThis as unknown as {
          __q2dMaps: Record<string, { view: { cellCenter(k: number): { x: number; y: number } } }>;
        }
      ).__q2dMaps[i as string]!.view.cellCenter(n as number),
    [cell, id] as const,
  );
  return { x: box.x + c.x, y: box.y + c.y };
}

async function legendCounts(page: Page, testid: string): Promise<Record<number, number>> {
  const rows = page.locator(`[data-testid="${testid}"] tr`);
  await rows.first().waitFor();
  const out: Record<number, number> = {};
  for (const r of await rows.all())
    out[Number(await r.getAttribute('data-code'))] = Number(await r.getAttribute('data-count'));
  return out;
}

const nonZero = (counts: number[]): Record<number, number> =>
  Object.fromEntries(counts.map((n, i) => [i, n] as const).filter(([, n]) => n > 0));

describe('the app in Chromium', () => {
  it('opens a clean image and shows its header fields', async () => {
    const page = await openImage('clean.qcow2');
    await expect.poll(() => page.getByTestId('verdict').textContent()).toBe('no errors');
    expect(await page.getByTestId('ov-version').textContent()).toBe('qcow2 version 3');
    expect(await page.getByTestId('ov-cluster-size').textContent()).toContain('65536 bytes');
    expect(await page.getByTestId('ov-virtual-size').textContent()).toContain('67108864 bytes');
    expect(await page.getByTestId('ov-refcount-bits').textContent()).toBe('16 bits');
    expect(await page.getByTestId('ov-state').textContent()).toContain('none set');
    // The verdict in plain words opens the Overview, agreeing with the header badge.
    expect(await page.getByTestId('ov-verdict').getAttribute('data-verdict')).toBe('clean');
    expect(await page.getByTestId('ov-headline').textContent()).toBe('No problems found');
    expect(await page.getByTestId('ov-repair').count()).toBe(0);
    expect(await page.getByTestId('field-l1_table_offset').textContent()).toMatch(/0x30000/);
    expect(await page.getByTestId('ck-corruptions').textContent()).toBe('0');
    await shot(page, 'overview-clean');
    // Keyboard: Alt+1 goes to the first view (Open), Tab reaches the view tabs.
    await page.keyboard.press('Alt+1');
    await expect.poll(() => page.getByTestId('tab-files').getAttribute('aria-selected')).toBe('true');
    await page.getByTestId('tab-overview').focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByTestId('tab-overview').getAttribute('aria-selected')).toBe('true');
    expect((page as Page & { errors?: string[] }).errors).toEqual([]);
    await page.close();
  });

  it('lists the snapshots of an image that has some', async () => {
    const page = await openImage('snapshots.qcow2');
    const rows = page.getByTestId('snapshot');
    await expect.poll(() => rows.count()).toBe(2);
    expect(await rows.nth(0).textContent()).toContain('installed');
    expect(await rows.nth(1).textContent()).toContain('updated');
    await shot(page, 'overview-snapshots');
    await page.close();
  });

  it("draws the cluster map: legend counts equal the engine's, cells take their role's colour", async () => {
    const page = await openImage('snapshots.qcow2');
    await page.getByTestId('tab-host-map').click();
    const engine = await checkFile(snaps, { roleMap: true });
    const legend = await legendCounts(page, 'host-legend');
    expect(legend).toEqual(nonZero(legendOf(trimRoleMap(engine.roleMap, engine.hostClusters), HOST_ROLE_COUNT)));
    expect(await page.evaluate('globalThis.__q2dMaps.host.pyramid.count')).toBe(engine.hostClusters);
    // Cell colours: a few cells of different roles are drawn in their legend colour.
    const roles = engine.roleMap!;
    const samples = [HostRole.Header, HostRole.L1, HostRole.RefcountTable, HostRole.SnapshotTable, HostRole.Data]
      .map((r) => roles.indexOf(r))
      .filter((i) => i >= 0);
    expect(samples.length).toBe(5);
    for (const cell of samples) {
      const px = await cellPixels(page, cell);
      const want = HOST_PALETTE.colors[roles[cell]!]!;
      expect(
        px.filter((p) => p === want).length / px.length,
        `cell ${cell} (${HOST_ROLE_NAMES[roles[cell]!]})`,
      ).toBeGreaterThan(0.5);
    }
    // Picking a role in the legend fades the others; picking it again shows all.
    const l1 = roles.indexOf(HostRole.L1);
    const data = roles.indexOf(HostRole.Data);
    const share = async (cell: number, color: string) => {
      const px = await cellPixels(page, cell);
      return px.filter((p) => p === color).length / px.length;
    };
    await page.getByTestId(`host-legend-${HostRole.L1}`).click();
    await expect.poll(() => share(data, HOST_PALETTE.colors[HostRole.Data]!)).toBe(0);
    expect(await share(l1, HOST_PALETTE.colors[HostRole.L1]!)).toBeGreaterThan(0.5);
    await shot(page, 'map-highlight');
    await page.getByTestId(`host-legend-${HostRole.L1}`).click();
    await expect.poll(() => share(data, HOST_PALETTE.colors[HostRole.Data]!)).toBeGreaterThan(0.5);
    await shot(page, 'map-snapshots');
    await page.close();
  });

  it('shows the right cluster on hover and on click (offset, role, refcount vs references, bytes)', async () => {
    const page = await openImage('clean.qcow2');
    await page.getByTestId('tab-host-map').click();
    await page.getByTestId('host-legend').waitFor();
    const io = await FileIO.open(clean);
    const image = await Qcow2Image.open(io);
    const l1Cluster = image.header.l1TableOffset / image.clusterSize;
    const refcount = await image.refcount(l1Cluster);
    await io.close();
    const p = await cellPoint(page, l1Cluster);
    await page.mouse.move(p.x, p.y);
    await expect
      .poll(() => page.getByTestId('hover-status').textContent())
      .toContain(`cluster ${l1Cluster} · offset 0x${(l1Cluster * 65536).toString(16)} · L1 table`);
    await expect.poll(() => page.getByTestId('hover-status').textContent()).toContain('refcount 1 / references 1');
    await page.mouse.click(p.x, p.y);
    await page.getByTestId('inspector').waitFor();
    expect(await page.getByTestId('insp-offset').textContent()).toBe(`0x${(l1Cluster * 65536).toString(16)}`);
    expect(await page.getByTestId('insp-role').textContent()).toBe('L1 table');
    expect(await page.getByTestId('insp-refcount').textContent()).toBe(String(refcount));
    expect(await page.getByTestId('insp-references').textContent()).toBe('1');
    // The hex view shows the L1 table's first entry: the L2 table offset with the COPIED flag (0x80...).
    await expect.poll(() => page.getByTestId('hex').textContent()).toMatch(/^00030000\s+80 00 00 00 00 04 00 00/);
    // Keyboard: → selects the next cluster.
    await page.keyboard.press('ArrowRight');
    await expect
      .poll(() => page.getByTestId('insp-offset').textContent())
      .toBe(`0x${((l1Cluster + 1) * 65536).toString(16)}`);
    await shot(page, 'map-click');
    await page.close();
  });

  it("shows the checker's anomaly on the map and in the inspector", async () => {
    const page = await openImage('damaged.qcow2');
    await expect.poll(() => page.getByTestId('verdict').textContent()).toMatch(/corruption/);
    await page.getByTestId('tab-host-map').click();
    await page.getByTestId('host-legend').waitFor();
    const engine = await checkFile(damaged, { roleMap: true });
    const err = engine.anomalies.find((a) => a.severity === 'error' && a.firstCluster !== undefined)!;
    expect(err).toBeTruthy();
    const leak = engine.anomalies.find((a) => a.severity === 'leak' && a.firstCluster !== undefined)!;
    // Striped (on top of its role colour) in the error stripe colour; the leak in the leak stripe colour.
    const stripeErr = OVERLAY_STRIPES[6]!;
    const stripeLeak = OVERLAY_STRIPES[5]!;
    const errPx = await cellPixels(page, err.firstCluster!);
    const errRole = HOST_PALETTE.colors[engine.roleMap![err.firstCluster!]!]!;
    expect(errPx.filter((p) => p === stripeErr).length).toBeGreaterThan(errPx.length / 5);
    expect(errPx.filter((p) => p === errRole).length).toBeGreaterThan(errPx.length / 5);
    const leakPx = await cellPixels(page, leak.firstCluster!);
    expect(leakPx.filter((p) => p === stripeLeak).length).toBeGreaterThan(leakPx.length / 5);
    // A clean data cell has no stripes.
    const okCell = engine.roleMap!.findIndex(
      (r, i) =>
        r === HostRole.Data &&
        !engine.anomalies.some(
          (a) => a.firstCluster !== undefined && i >= a.firstCluster && i < a.firstCluster + a.count,
        ),
    );
    const okPx = await cellPixels(page, okCell);
    expect(okPx.filter((p) => p === stripeErr || p === stripeLeak).length).toBe(0);
    expect(okPx.filter((p) => p === HOST_PALETTE.colors[HostRole.Data]).length).toBeGreaterThan(okPx.length / 2);
    // Clicking the damaged cell lists the finding.
    const p = await cellPoint(page, err.firstCluster!);
    await page.mouse.click(p.x, p.y);
    await expect.poll(() => page.getByTestId('insp-anomalies').textContent()).toContain(err.explanation);
    expect(await page.getByTestId('insp-references').textContent()).toBe('2');
    expect(await page.getByTestId('insp-refcount').textContent()).toBe('1');
    // Both L2 entries that point at it are named (table, index, guest offset).
    const refs = (await page.getByTestId('insp-referrers').locator('li').allTextContents()).map((x) =>
      x.replace(/\s+/g, ' '),
    );
    expect(refs).toEqual([
      expect.stringMatching(/^l2 table 0x[0-9a-f]+ \[4\] guest 0x4000$/),
      expect.stringMatching(/^l2 table 0x[0-9a-f]+ \[5\] guest 0x5000$/),
    ]);
    expect(await page.getByTestId('findings').textContent()).toContain(`Findings (${engine.anomalies.length})`);
    await shot(page, 'map-damaged');
    await page.close();
  });

  it('guest map: a guest cluster shows where it lives, and leads to that host cluster', async () => {
    const page = await openImage('clean.qcow2');
    await page.getByTestId('tab-guest-map').click();
    await page.getByTestId('guest-legend').waitFor();
    const p = await cellPoint(page, 0, 'guest');
    await page.mouse.click(p.x, p.y);
    const host = page.getByTestId('guest-host-offset');
    await host.waitFor();
    const offset = (await host.textContent())!;
    await shot(page, 'guest-map');
    await page.getByTestId('show-in-host').click();
    await expect.poll(() => page.getByTestId('insp-offset').textContent()).toBe(offset);
    expect(await page.getByTestId('insp-role').textContent()).toBe('data');
    await page.close();
  });

  it('shows a clear error for a file that is not qcow2, and stays usable', async () => {
    const page = await browser.context.newPage();
    await page.goto(served.url);
    await page.getByTestId('open-notes.txt').click();
    await expect
      .poll(() => page.getByTestId('error').textContent())
      .toContain('Image is not in qcow2 format (header.magic = 0x');
    await shot(page, 'error');
    await page.getByTestId('error').getByRole('button', { name: 'Dismiss' }).click();
    await page.getByTestId('open-clean.qcow2').click();
    await page.getByTestId('overview').waitFor();
    expect(await page.getByTestId('error').count()).toBe(0);
    await page.close();
  });

  it('cancels a long check and stays usable', async () => {
    const page = await openImage('clean.qcow2', slow);
    const progress = page.getByTestId('progress');
    await progress.waitFor();
    const bar = progress.getByRole('progressbar');
    await expect.poll(async () => Number(await bar.getAttribute('aria-valuenow'))).toBeGreaterThan(0);
    // Bytes done of the image's size, the rate, and the time left (or so far).
    await expect
      .poll(() => page.getByTestId('progress-detail').textContent(), { timeout: 10_000 })
      .toMatch(/^[\d.]+ (B|KiB|MiB) of [\d.]+ MiB · [\d.]+ (B|KiB|MiB)\/s · (about .+ left|.+ so far)$/);
    await shot(page, 'progress');
    // Esc cancels what Cancel cancels.
    await page.keyboard.press('Escape');
    await expect.poll(() => page.getByTestId('notice').textContent()).toContain('Cancelled');
    expect(await progress.count()).toBe(0);
    expect(await page.getByTestId('error').count()).toBe(0);
    // Still usable: the overview is there and the file list can be browsed.
    expect(await page.getByTestId('ov-version').textContent()).toBe('qcow2 version 3');
    await page.getByTestId('tab-files').click();
    await page.getByTestId('open-damaged.qcow2').waitFor();
    await shot(page, 'after-cancel');
    await page.close();
  });
});
