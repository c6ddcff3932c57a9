// Lost tables in the app (a zeroed L1 table: its L2 table and data still in the file, QEMU counts
// them as leaks): the header badge, Overview, the findings view, the cluster inspector and the
// wizard say the data is at risk and what to do — never "mark it free; no data is lost" — and the
// badge follows every write and every undo. Also: the salvage path's steps pass axe and are
// photographed, and long work shows bytes, rate and time left, and stops on Esc.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { qemuIo, sha256, tempDir } from '../helpers/qemu.js';
import { makeHeaderZeroed, makeL1Zeroed } from '../wizard/salvage-images.js';
import { launchChromium, startServe, type Chromium, type Served } from './harness.js';
import { axeViolations, screenshots } from './a11y.js';

const root = tempDir('q2d-lost-tables-');
let served: Served;
let slow: Served;
let browser: Chromium;

beforeAll(async () => {
  makeL1Zeroed(root.dir, 'lost.qcow2');
  makeL1Zeroed(root.dir, 'lost-undo.qcow2');
  makeHeaderZeroed(root.dir, 'no-header.qcow2');
  [served, slow, browser] = await Promise.all([
    startServe(root.dir),
    startServe(root.dir, { QCOW2_DOCTOR_TEST_CHECK_DELAY_MS: '30000' }),
    launchChromium({ width: 1440, height: 900 }),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([served?.stop(), slow?.stop()]);
  root.cleanup();
});

async function newPage(s: Served = served): Promise<Page & { errors: string[] }> {
  const page = (await browser.context.newPage()) as Page & { errors: string[] };
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(s.url);
  return page;
}

async function audit(page: Page, name: string): Promise<void> {
  const v = await axeViolations(page);
  expect(v, `${name}: ${JSON.stringify(v, null, 1)}`).toEqual([]);
  await screenshots(page, name);
}

const NO_LOSS = /no data is lost/i;

describe('lost tables in the app', () => {
  it('badge, Overview, findings and inspector: data at risk, the data the table maps, what to do', async () => {
    const page = await newPage();
    await page.getByTestId('open-lost.qcow2').click();
    await page.getByTestId('overview').waitFor();
    await expect
      .poll(() => page.getByTestId('verdict').getAttribute('data-verdict'), { timeout: 30_000 })
      .toBe('corrupt');
    expect(await page.getByTestId('verdict').innerText()).toBe('1 lost table · data at risk');
    expect(await page.getByTestId('ov-headline').innerText()).toBe('Data is at risk: do not repair leaks');
    expect(await page.getByTestId('ov-verdict').innerText()).toContain('1 lost L2 table still maps 0.2 MiB of data');

    await page.getByTestId('tab-anomalies').click();
    const card = page.getByTestId('lost-table');
    await card.waitFor();
    expect(await card.getAttribute('data-cluster')).toBe('4');
    const text = await card.innerText();
    expect(text).toContain('Lost L2 table at cluster 4');
    expect(await page.getByTestId('lost-table-data').innerText()).toBe(
      'It still maps 3 data clusters (192 KiB); 192 KiB of it nothing else refers to: that data is at risk.',
    );
    expect(await page.getByTestId('lost-table-place').innerText()).toContain('It belongs at L1 slot 0: guest 0x0–');
    expect(text).toContain('qcow2-doctor check -r all');
    expect(await page.getByTestId('anomalies').innerText()).not.toMatch(NO_LOSS);
    await audit(page, 'findings-lost-tables');

    // The inspector of a data cluster the lost table maps (cluster 6): data at risk, not a mere leak.
    await card.getByRole('button', { name: '5–7' }).click();
    await page.getByTestId('inspector').waitFor();
    await expect.poll(() => page.getByTestId('insp-offset').textContent(), { timeout: 30_000 }).toBe('0x50000');
    const insp = page.getByTestId('insp-anomalies');
    await expect
      .poll(() => insp.innerText(), { timeout: 30_000 })
      .toContain('This cluster holds data of a lost table.');
    expect(await insp.innerText()).toContain('data at risk');
    expect(await insp.innerText()).not.toMatch(NO_LOSS);
    await audit(page, 'inspector-lost-table');
    expect(page.errors).toEqual([]);
    await page.close();
  });

  it('the wizard repairs in place, then undo: the header badge follows each write back to "lost tables"', async () => {
    const file = join(root.dir, 'lost-undo.qcow2');
    const original = readFileSync(file);
    const page = await newPage();
    await page.getByTestId('tab-wizard').click();
    await page.getByTestId('wizard-open-lost-undo.qcow2').click();
    await page.getByTestId('wizard-target-inplace').check();
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-verdict').waitFor({ timeout: 60_000 });
    await expect
      .poll(() => page.getByTestId('verdict').getAttribute('data-verdict'), { timeout: 30_000 })
      .toBe('corrupt');
    // The leak group is not "mark it free; no data is lost".
    expect(await page.getByTestId('wizard-kind-leaked-cluster').innerText()).not.toMatch(NO_LOSS);
    expect(await page.getByTestId('wizard-kind-lost-table').innerText()).toContain('at risk');
    await audit(page, 'wizard-4-explain-lost-tables');
    await page.getByTestId('wizard-to-action').click();
    // The button that led here is gone: the focus is on the new step's heading, not lost to <body>.
    await expect
      .poll(() => page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.testid))
      .toBe('wizard-step-heading');
    expect(await page.getByTestId('wizard-step-heading').textContent()).toBe('Step 5 of 9: Choose a fix');
    await page.getByTestId('wizard-action-all').check();
    await audit(page, 'wizard-5-action-lost-tables');
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-plan').waitFor();
    await page.getByTestId('wizard-apply').click();
    await page.getByTestId('wizard-verified').waitFor({ timeout: 60_000 });
    // -r all re-links the lost L2 table (its slot is certain): the data reads back, the badge is clean.
    expect(qemuIo(file, ['read -P 0x5a 0 128k'])).not.toMatch(/Pattern verification failed/);
    await expect
      .poll(() => page.getByTestId('verdict').getAttribute('data-verdict'), { timeout: 30_000 })
      .toBe('clean');
    await page.getByTestId('wizard-to-report').click();
    await page.getByTestId('wizard-undo').click();
    await page.getByTestId('wizard-undone').waitFor();
    expect(readFileSync(file).equals(original)).toBe(true);
    // Undone: checked again, the header says lost tables again.
    await expect
      .poll(() => page.getByTestId('verdict').getAttribute('data-verdict'), { timeout: 30_000 })
      .toBe('corrupt');
    expect(await page.getByTestId('verdict').innerText()).toBe('1 lost table · data at risk');
    await page.getByTestId('tab-overview').click();
    expect(await page.getByTestId('ov-headline').innerText()).toBe('Data is at risk: do not repair leaks');
    await audit(page, 'overview-after-undo');
    expect(page.errors).toEqual([]);
    await page.close();
  });
});

describe('the salvage path and long work', () => {
  it('every salvage step passes axe and is photographed; the new image is written and checked', async () => {
    const page = await newPage();
    await page.getByTestId('open-no-header.qcow2').click();
    await page.getByTestId('error-salvage').click();
    await page.getByTestId('wizard-to-action').waitFor();
    await audit(page, 'salvage-4-explain');
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-action').waitFor();
    await audit(page, 'salvage-5-action');
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-salvage-facts').waitFor({ timeout: 60_000 });
    await audit(page, 'salvage-6-preview');
    await page.getByTestId('wizard-salvage').click();
    await page.getByTestId('wizard-verified').waitFor({ timeout: 60_000 });
    await audit(page, 'salvage-8-result');
    await page.getByTestId('wizard-to-report').click();
    await page.getByTestId('wizard-salvaged').waitFor();
    await audit(page, 'salvage-9-report');
    expect(page.errors).toEqual([]);
    await page.close();
  });

  it('a long scan shows bytes done of the size, the rate and the time; Esc stops it and writes nothing', async () => {
    const before = readdirSync(root.dir).sort();
    const original = sha256(join(root.dir, 'lost.qcow2'));
    const page = await newPage(slow); // every check and scan waits 30 s first (test hook)
    await page.getByTestId('tab-wizard').click();
    await page.getByTestId('wizard-open-lost.qcow2').click();
    await page.getByTestId('wizard-diagnose').click();
    const detail = page.getByTestId('wizard-progress-detail');
    await expect
      .poll(() => detail.textContent(), { timeout: 10_000 })
      .toMatch(/^[\d.]+ (B|KiB|MiB) of [\d.]+ (KiB|MiB) · (.+\/s · )?(about .+ left|.+ so far)$/);
    await screenshots(page, 'wizard-3-diagnose-progress');
    await page.keyboard.press('Escape');
    await page.getByTestId('wizard-diagnose-stopped').waitFor();
    expect(await page.getByTestId('wizard-progress').count()).toBe(0);
    // The triage scan's Cancel answers to Esc too.
    await page.getByTestId('tab-triage').click();
    await page.getByTestId('triage-scan').click();
    await page.getByTestId('triage-progress').waitFor();
    await page.keyboard.press('Escape');
    await expect.poll(() => page.getByTestId('notice').textContent(), { timeout: 10_000 }).toContain('Cancelled');
    expect(await page.getByTestId('triage-progress').count()).toBe(0);
    expect(await page.getByTestId('triage-table').count()).toBe(0);
    expect(readdirSync(root.dir).sort()).toEqual(before);
    expect(sha256(join(root.dir, 'lost.qcow2'))).toBe(original);
    expect(page.errors).toEqual([]);
    await page.close();
  });
});
