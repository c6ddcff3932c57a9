// End to end in Chromium against the real `qcow2-doctor serve`: the recovery wizard walked on
// damaged copies made by qemu-img/qemu-io, each ending with qemu-img check clean and the data
// patterns intact; a cancel during diagnosis; the refusal for an image a running QEMU process
// holds; the findings table and the triage table. Screenshots: test-results/wizard-*.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { qemuCheck, sha256, tempDir } from '../helpers/qemu.js';
import { launchChromium, startServe, type Chromium, type Served } from '../e2e/harness.js';
import { assertPatterns, makeDirty, makeLeaks, makeManyLeaks, makeNeedsRebuild, makeRefcountErrors } from './images.js';

const root = tempDir('q2d-wizard-e2e-');
let served: Served;
let slow: Served;
let browser: Chromium;
const held: ChildProcess[] = [];
mkdirSync('test-results', { recursive: true });

beforeAll(async () => {
  makeLeaks(root.dir);
  makeRefcountErrors(root.dir);
  makeDirty(root.dir);
  makeNeedsRebuild(root.dir);
  makeLeaks(root.dir, 'held.qcow2');
  makeRefcountErrors(root.dir, 'undo.qcow2');
  makeManyLeaks(root.dir);
  [served, slow, browser] = await Promise.all([
    startServe(root.dir),
    startServe(root.dir, { QCOW2_DOCTOR_TEST_CHECK_DELAY_MS: '30000' }),
    launchChromium({ width: 1300, height: 1000, colorScheme: 'light' }),
  ]);
});

afterAll(async () => {
  for (const p of held) p.kill('SIGKILL');
  await browser?.close();
  await Promise.all([served?.stop(), slow?.stop()]);
  root.cleanup();
});

const shot = (page: Page, name: string) => page.screenshot({ path: `test-results/wizard-${name}.png`, fullPage: true });

async function startWizard(name: string, s: Served = served): Promise<Page> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  (page as Page & { errors?: string[] }).errors = errors;
  await page.goto(s.url);
  await page.getByTestId('tab-wizard').click();
  await page.getByTestId(`wizard-open-${name}`).click();
  await page.getByTestId('wizard-safety').waitFor();
  return page;
}

const VERDICT_OF_EXIT: Record<number, string> = { 0: 'clean', 1: 'unreadable', 2: 'corrupt', 3: 'leaks' };

describe('recovery wizard', () => {
  it.each([
    ['leaks.qcow2', 'leaks', 'copy'],
    ['refcount-errors.qcow2', 'all', 'copy'],
    ['dirty.qcow2', 'all', 'inPlace'],
    ['needs-rebuild.qcow2', 'all', 'copy'],
  ] as const)('%s: diagnose, explain, plan, repair (%s, %s), verify, report', async (name, action, target) => {
    const file = join(root.dir, name);
    const original = sha256(file);
    const before = qemuCheck(file);
    const qemuBefore = before.status;
    const corruptions = Number(before.json?.corruptions ?? 0);
    const leaks = Number(before.json?.leaks ?? 0);
    const page = await startWizard(name);
    if (target === 'inPlace') await page.getByTestId('wizard-target-inplace').check();
    await page.getByTestId('wizard-diagnose').click();
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor();
    expect(await verdict.getAttribute('data-verdict')).toBe(VERDICT_OF_EXIT[qemuBefore]);
    const text = await verdict.innerText();
    if (action === 'leaks') expect(text).toContain('wasted space, no harm to your data');
    if (name === 'dirty.qcow2') expect(text).toContain('was not closed cleanly');
    if (name === 'needs-rebuild.qcow2')
      expect(text).toContain('in use but marked free: the next write could overwrite your data');
    await shot(page, `${name}-explain`);

    await page.getByTestId('wizard-to-action').click();
    // An option that would do nothing is not offered.
    expect(await page.getByTestId('wizard-action-leaks').count()).toBe(leaks > 0 ? 1 : 0);
    await page.getByTestId(`wizard-action-${action}`).check();
    await page.getByTestId('wizard-to-preview').click();
    const plan = page.getByTestId('wizard-plan');
    await plan.waitFor();
    const steps = await plan.locator('li').count();
    expect(steps).toBeGreaterThan(0);
    // The plan is searchable.
    await page.getByTestId('wizard-plan-search').fill('refcount');
    const filtered = await plan.locator('li').count();
    expect(filtered).toBeGreaterThan(0);
    expect(filtered).toBeLessThanOrEqual(steps);
    await page.getByTestId('wizard-plan-search').fill('');
    // The summary counts in the checker's units (qemu-img check's corruptions and leaked clusters), plurals right.
    const summary = await page.getByTestId('wizard-plan-summary').innerText();
    expect(summary).toMatch(steps === 1 ? /^1 metadata write / : new RegExp(`^${steps} metadata writes `));
    if (action === 'all' && corruptions > 0)
      expect(summary).toContain(`${corruptions} ${corruptions === 1 ? 'corruption' : 'corruptions'}`);
    if (leaks > 0) expect(summary).toContain(`${leaks} ${leaks === 1 ? 'leaked cluster' : 'leaked clusters'}`);
    expect(summary).not.toMatch(/problems/);
    // A repair that loses guest data says so before it writes. refcount-errors: an L2 entry redirected onto
    // another data cluster; the cluster it pointed at is leaked and freed, and its guest range is unknown.
    const loses = page.getByTestId('wizard-loses');
    expect(await loses.count()).toBe(name === 'refcount-errors.qcow2' ? 1 : 0);
    if (name === 'refcount-errors.qcow2')
      expect(await loses.innerText()).toMatch(/frees 64(\.0)? KiB of leaked data whose place in the guest disk nobody/);
    await shot(page, `${name}-preview`);
    expect(sha256(file)).toBe(original); // nothing written before "apply"

    await page.getByTestId('wizard-apply').click();
    const verified = page.getByTestId('wizard-verified');
    await verified.waitFor({ timeout: 60_000 });
    expect(await verified.getAttribute('data-ok')).toBe('true');
    expect(await page.getByTestId('after-errors').innerText()).toBe('0');
    expect(await page.getByTestId('after-leaks').innerText()).toBe('0');
    expect(await page.getByTestId('wizard-guest-data').innerText()).toContain('unchanged');
    expect(await page.getByTestId('wizard-qemu').textContent()).toContain('No errors were found on the image.');
    await expect.poll(() => page.getByTestId('verdict').innerText()).toBe('no errors'); // the header follows the repaired image
    await shot(page, `${name}-verified`);

    await page.getByTestId('wizard-to-report').click();
    await page.getByTestId('wizard-save-html').click();
    await page.getByTestId('wizard-saved').waitFor();
    const saved = await page.getByTestId('wizard-saved').innerText();
    const reportName = /Saved (\S+\.report\.html)/.exec(saved)![1]!;
    expect(readFileSync(join(root.dir, reportName), 'utf8')).toContain('After the repair: Clean');

    if (name === 'leaks.qcow2') {
      // The metadata-only copy for support, offered next to the report.
      await page.getByTestId('wizard-strip').click();
      await expect.poll(() => page.getByTestId('wizard-saved').innerText()).toContain('.stripped.qcow2');
      const strippedName = /Saved (\S+\.stripped\.qcow2)/.exec(await page.getByTestId('wizard-saved').innerText())![1]!;
      const stripped = qemuCheck(join(root.dir, strippedName));
      // It is a copy of the image as the customer has it (the original, with its leak).
      const originalCheck = qemuCheck(file);
      expect(stripped.status).toBe(3);
      expect({ ...stripped.json, filename: '' }).toEqual({ ...originalCheck.json, filename: '' });
    }
    const repaired = target === 'copy' ? join(root.dir, name.replace('.qcow2', '.repaired.qcow2')) : file;
    expect(qemuCheck(repaired).status).toBe(0);
    assertPatterns(repaired);
    if (target === 'copy') expect(sha256(file)).toBe(original);
    else expect(await page.getByTestId('wizard-undo-card').count()).toBe(1);
    expect((page as Page & { errors?: string[] }).errors).toEqual([]);
    await page.close();
  });

  it('undo after an in-place repair puts the image back byte for byte', async () => {
    const file = join(root.dir, 'undo.qcow2');
    const original = readFileSync(file);
    const page = await startWizard('undo.qcow2');
    await page.getByTestId('wizard-target-inplace').check();
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-apply').click();
    await page.getByTestId('wizard-verified').waitFor({ timeout: 60_000 });
    expect(qemuCheck(file).status).toBe(0);
    await page.getByTestId('wizard-to-report').click();
    await page.getByTestId('wizard-undo').click();
    await page.getByTestId('wizard-undone').waitFor();
    expect(readFileSync(file).equals(original)).toBe(true);
    // The app checked the restored image again: the header badge says what qemu-img check says now.
    const corruptions = Number(qemuCheck(file).json?.corruptions);
    expect(corruptions).toBeGreaterThan(0);
    await expect
      .poll(() => page.getByTestId('verdict').innerText())
      .toBe(`${corruptions} ${corruptions === 1 ? 'corruption' : 'corruptions'}`);
    await page.close();
  });

  it('cancelling during diagnosis stops the check and changes nothing', async () => {
    const file = join(root.dir, 'leaks.qcow2');
    const before = sha256(file);
    const page = await startWizard('leaks.qcow2', slow);
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-progress').waitFor();
    // Esc cancels what Cancel cancels.
    await page.keyboard.press('Escape');
    await page.getByTestId('wizard-diagnose-stopped').waitFor();
    expect(await page.getByTestId('wizard-progress').count()).toBe(0);
    expect(await page.getByTestId('wizard-error').count()).toBe(0);
    await shot(page, 'cancelled');
    expect(sha256(file)).toBe(before);
    await page.close();
  });

  it('refuses an image a running QEMU process holds, says how to stop it, and goes on once it is stopped', async () => {
    const file = join(root.dir, 'held.qcow2');
    const q = spawn('qemu-io', ['-f', 'qcow2', file], { stdio: ['pipe', 'pipe', 'pipe'] });
    held.push(q);
    await new Promise<void>((resolve) =>
      q.stdout!.on('data', (d: Buffer) => d.toString().includes('qemu-io>') && resolve()),
    );
    const page = await startWizard('held.qcow2');
    const locked = page.getByTestId('wizard-locked');
    await locked.waitFor();
    const text = await locked.innerText();
    expect(text).toContain(`qemu-io (pid ${q.pid}`);
    expect(text).toMatch(/quit QEMU|kill/);
    expect(text).not.toContain('`'); // plain words, no literal Markdown
    expect(await page.getByTestId('wizard-diagnose').count()).toBe(0);
    await shot(page, 'locked');
    q.kill('SIGKILL');
    await new Promise((r) => q.once('exit', r));
    await page.getByTestId('wizard-recheck-lock').click();
    await page.getByTestId('wizard-diagnose').waitFor();
    await page.close();
  });

  it('Overview says the verdict in plain words and its "Repair…" starts the wizard on this image', async () => {
    const page = await browser.context.newPage();
    await page.goto(served.url);
    await page.getByTestId('open-refcount-errors.qcow2').click();
    const panel = page.getByTestId('ov-verdict');
    await expect.poll(() => panel.getAttribute('data-verdict')).toBe('corrupt');
    const corruptions = Number(qemuCheck(join(root.dir, 'refcount-errors.qcow2')).json?.corruptions);
    // Header badge and Overview agree; no green "clean" next to a red count.
    expect(await page.getByTestId('verdict').innerText()).toBe(
      `${corruptions} ${corruptions === 1 ? 'corruption' : 'corruptions'}`,
    );
    expect(await page.locator('.badge.ok').count()).toBe(0);
    await page.getByTestId('ov-repair').click();
    await page.getByTestId('wizard-safety').waitFor();
    expect(await page.getByTestId('wizard-image').innerText()).toBe('refcount-errors.qcow2');
    await page.close();
  });

  it('links a finding to the cluster map, and the findings table centres a chosen record on it', async () => {
    const page = await startWizard('refcount-errors.qcow2');
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-verdict').waitFor();
    await page.getByTestId('wizard-map-refcount-too-low').click();
    expect(await page.getByTestId('tab-host-map').getAttribute('aria-selected')).toBe('true');
    await page.getByTestId('tab-anomalies').click();
    const rows = page.getByTestId('anomaly-row');
    await rows.first().waitFor();
    expect(await rows.count()).toBeGreaterThanOrEqual(2);
    await page.getByTestId('kind-leaked-cluster').click();
    expect(await rows.count()).toBe(1);
    await shot(page, 'findings');
    await rows.first().click();
    expect(await page.getByTestId('tab-host-map').getAttribute('aria-selected')).toBe('true');
    await page.close();
  });

  it('the findings table keeps only the visible rows of 2048 records in the page, and sorts them', async () => {
    const page = await browser.context.newPage();
    await page.goto(served.url);
    await page.getByTestId('open-many-leaks.qcow2').click();
    await page.getByTestId('overview').waitFor();
    await page.getByTestId('tab-anomalies').click();
    await expect.poll(() => page.getByTestId('anomaly-count').innerText()).toBe('2,048 of 2,048 records');
    const rows = page.getByTestId('anomaly-row');
    expect(await rows.count()).toBeLessThan(100);
    const firstCluster = await rows.first().locator('span').nth(2).innerText();
    // Scroll to the end: the last records are drawn, the first are gone from the page.
    await page.getByTestId('anomaly-list').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
      el.dispatchEvent(new Event('scroll'));
    });
    await expect.poll(() => rows.first().locator('span').nth(2).innerText()).not.toBe(firstCluster);
    expect(await rows.count()).toBeLessThan(100);
    // Sorting by cluster, descending: the highest cluster comes first.
    await page.getByTestId('anomaly-list').evaluate((el) => {
      el.scrollTop = 0;
      el.dispatchEvent(new Event('scroll'));
    });
    await expect.poll(() => rows.first().locator('span').nth(2).innerText()).toBe(firstCluster);
    await page.getByTestId('sort-cluster').click();
    await expect
      .poll(async () => Number(await rows.first().locator('span').nth(2).innerText()))
      .toBeGreaterThan(Number(firstCluster));
    await page.getByTestId('anomaly-filter').fill('Leaked cluster 6 ');
    await expect.poll(() => page.getByTestId('anomaly-count').innerText()).toMatch(/^\d+ of 2,048 records$/);
    await shot(page, 'many-findings');
    await page.close();
  });

  it("the triage table gives qemu-img check's verdict for every image of the folder", async () => {
    const page = await browser.context.newPage();
    await page.goto(served.url);
    await page.getByTestId('tab-triage').click();
    await page.getByTestId('triage-scan').click();
    const table = page.getByTestId('triage-table');
    await table.waitFor({ timeout: 60_000 });
    const rows = page.getByTestId('triage-row');
    const n = await rows.count();
    expect(n).toBeGreaterThanOrEqual(6);
    for (let i = 0; i < n; i++) {
      const row = rows.nth(i);
      const name = (await row.locator('td').first().innerText()).trim();
      const status = qemuCheck(join(root.dir, name)).status;
      expect({ name, verdict: await row.getAttribute('data-verdict') }).toEqual({
        name,
        verdict: VERDICT_OF_EXIT[status],
      });
    }
    await shot(page, 'triage');
    await page.close();
  });
});
