// End to end in Chromium against the real `qcow2-doctor serve`: the wizard's salvage path.
// (a) a header cluster zeroed: image.open refuses, the wizard explains it and offers salvage; the
// salvaged qcow2 passes qemu-img check and reads back the patterns; the original is unchanged.
// (b) a zeroed L1 table: the check sees only leaks, the wizard warns that repairing them would lose
// the data and recommends salvage, which recovers every pattern. (c) an L1 table offset past the
// end of the file: explained as such, salvaged to a raw disk file. (d) an L2 table overwritten: the
// repair would refuse to guess, salvage is recommended, the lost range is listed. (e) the main
// window's refusal to open such an image offers salvage in the wizard; a cancelled scan. Screenshots: test-results/wizard-salvage-*.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium, startServe, type Chromium, type Served } from '../e2e/harness.js';
import { assertPatterns } from './images.js';
import {
  makeHeaderZeroed,
  makeL1Unreadable,
  makeL1Zeroed,
  makeL1ZeroedScattered,
  makeL2Overwritten,
} from './salvage-images.js';
import { qemuCheck, qemuIo, sha256, tempDir } from '../helpers/qemu.js';

const root = tempDir('q2d-wizard-salvage-e2e-');
let served: Served;
let slow: Served;
let browser: Chromium;
mkdirSync('test-results', { recursive: true });

beforeAll(async () => {
  makeHeaderZeroed(root.dir);
  makeL1Zeroed(root.dir);
  makeL1ZeroedScattered(root.dir);
  makeL1Unreadable(root.dir);
  makeL2Overwritten(root.dir);
  [served, slow, browser] = await Promise.all([
    startServe(root.dir),
    startServe(root.dir, { QCOW2_DOCTOR_TEST_CHECK_DELAY_MS: '30000' }),
    launchChromium({ width: 1300, height: 1000, colorScheme: 'light' }),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([served?.stop(), slow?.stop()]);
  root.cleanup();
});

const shot = (page: Page, name: string) =>
  page.screenshot({ path: `test-results/wizard-salvage-${name}.png`, fullPage: true });

async function openInWizard(name: string, s: Served = served): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(s.url);
  await page.getByTestId('tab-wizard').click();
  await page.getByTestId(`wizard-open-${name}`).click();
  return { page, errors };
}

/** From step 5 (salvage chosen): scan, check the preview, write, verify; returns the output's name.
 * `headerLost`: the header that names a backing file is gone, so the preview first asks whether there
 * was one (never "nothing lost" while unallocated ranges may belong to a backing file); the test answers none. */
async function salvage(page: Page, name: string, headerLost = false): Promise<string> {
  await page.getByTestId('wizard-to-preview').click();
  const facts = page.getByTestId('wizard-salvage-facts');
  await facts.waitFor({ timeout: 60_000 });
  const question = page.getByTestId('wizard-salvage-backing-unknown');
  if (headerLost) {
    expect(await question.innerText()).toContain('Did this disk have a backing file?');
    const verdict = page.getByTestId('wizard-salvage-verdict');
    expect(await verdict.innerText()).toContain('whether your disk had a backing file is unknown');
    expect(await verdict.getAttribute('class')).not.toContain('ok');
    expect(await facts.innerText()).toContain('would come from a backing file, if the disk had one');
    await shot(page, `${name}-backing-question`);
    await page.getByTestId('wizard-salvage-no-backing').click();
    await question.waitFor({ state: 'detached', timeout: 60_000 });
    await facts.waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('wizard-salvage-lost').count()).toBe(0); // no range left unaccounted for
    expect(await facts.innerText()).not.toContain('Backing file');
  }
  expect(await question.count()).toBe(0);
  expect(await page.getByTestId('salvage-recovered').innerText()).toBe('192 KiB');
  expect(await page.getByTestId('salvage-lost').innerText()).toBe('0 B');
  expect(await page.getByTestId('wizard-salvage-verdict').getAttribute('data-lost')).toBe('0');
  await shot(page, `${name}-preview`);
  await page.getByTestId('wizard-salvage').click();
  const verified = page.getByTestId('wizard-verified');
  await verified.waitFor({ timeout: 60_000 });
  expect(await verified.getAttribute('data-ok')).toBe('true');
  expect(await page.getByTestId('wizard-qemu').textContent()).toContain('No errors were found on the image.');
  expect(await page.getByTestId('wizard-salvage-outcome').innerText()).toContain('Lost: nothing');
  await shot(page, `${name}-verified`);
  const out = await page.getByTestId('wizard-salvaged-name').innerText();
  await page.getByTestId('wizard-to-report').click();
  expect(await page.getByTestId('wizard-salvaged').innerText()).toContain(out);
  await shot(page, `${name}-report`);
  return out;
}

describe('recovery wizard: salvage', () => {
  it('a destroyed header: explained in plain words, salvage offered, the salvaged qcow2 is clean and holds the patterns', async () => {
    const file = join(root.dir, 'header-zeroed.qcow2');
    const original = sha256(file);
    const { page, errors } = await openInWizard('header-zeroed.qcow2');
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor();
    expect(await verdict.getAttribute('data-verdict')).toBe('unopenable');
    expect(await verdict.innerText()).toContain('cannot be opened');
    expect(await page.getByTestId('wizard-open-reason').innerText()).toContain('qcow2');
    await shot(page, 'header-explain');
    await page.getByTestId('wizard-to-action').click();
    expect(await page.getByTestId('wizard-action-salvage').isChecked()).toBe(true);
    expect(await page.getByTestId('wizard-action-leaks').count()).toBe(0); // nothing to repair in a file that cannot be opened
    await shot(page, 'header-action');
    const out = await salvage(page, 'header', true);
    expect(out).toBe('header-zeroed.salvaged.qcow2');
    const salvaged = join(root.dir, out);
    expect(qemuCheck(salvaged).status).toBe(0);
    assertPatterns(salvaged);
    expect(sha256(file)).toBe(original);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('a zeroed L1 table: the leaks are lost tables, salvage is recommended and recovers every pattern', async () => {
    const file = join(root.dir, 'l1-zeroed.qcow2');
    const original = sha256(file);
    const { page, errors } = await openInWizard('l1-zeroed.qcow2');
    await page.getByTestId('wizard-diagnose').click();
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor({ timeout: 60_000 });
    expect(await verdict.getAttribute('data-salvage')).toBe('advised');
    expect(await page.getByTestId('wizard-salvage-advice').innerText()).toContain(
      '"Repair leaks" keeps these clusters',
    );
    await shot(page, 'l1-explain');
    await page.getByTestId('wizard-to-action').click();
    expect(await page.getByTestId('wizard-action-salvage').isChecked()).toBe(true);
    await page.getByTestId('wizard-leaks-danger').waitFor();
    await shot(page, 'l1-action');
    const out = await salvage(page, 'l1');
    expect(out).toBe('l1-zeroed.salvaged.qcow2');
    const salvaged = join(root.dir, out);
    expect(qemuCheck(salvaged).status).toBe(0);
    assertPatterns(salvaged);
    expect(sha256(file)).toBe(original);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('a zeroed L1 whose tables nothing places: the preview and the result say "placed by guess", never a green success', async () => {
    const { page, errors } = await openInWizard('l1-zeroed-scattered.qcow2');
    await page.getByTestId('wizard-diagnose').click();
    await page.getByTestId('wizard-verdict').waitFor({ timeout: 60_000 });
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-action-salvage').check();
    await page.getByTestId('wizard-to-preview').click();
    const verdict = page.getByTestId('wizard-salvage-verdict');
    await verdict.waitFor({ timeout: 60_000 });
    expect(await verdict.getAttribute('data-exit')).toBe('4');
    expect(await verdict.getAttribute('class')).not.toMatch(/\bok\b/);
    expect(await verdict.innerText()).toMatch(/Recovered; 8\.\d+ MiB placed by guess, confidence 40%/);
    expect(await verdict.innerText()).not.toContain('All of the data');
    expect(await page.getByTestId('wizard-salvage-placement').innerText()).toContain('BY GUESS (confidence 40%)');
    await shot(page, 'guess-preview');
    await page.getByTestId('wizard-salvage').click();
    const verified = page.getByTestId('wizard-verified');
    await verified.waitFor({ timeout: 60_000 });
    expect(await verified.getAttribute('class')).toMatch(/\bguess\b/);
    expect(await verified.innerText()).toContain('placed by guess');
    expect(await verified.innerText()).not.toContain('The salvaged image is clean');
    expect(await page.getByTestId('wizard-salvage-outcome').innerText()).not.toContain('Lost: nothing');
    await shot(page, 'guess-verified');
    await page.getByTestId('wizard-to-report').click();
    expect(await page.getByTestId('wizard-salvaged').innerText()).toContain('placed by guess, confidence 0.4');
    expect(await page.getByTestId('wizard-salvaged').innerText()).not.toContain('nothing was lost');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('an unreadable L1 table: explained as such, salvaged to a raw disk file that holds the patterns', async () => {
    const file = join(root.dir, 'l1-unreadable.qcow2');
    const original = sha256(file);
    const { page, errors } = await openInWizard('l1-unreadable.qcow2');
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor();
    expect(await verdict.innerText()).toContain('(the L1 table) cannot be read');
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-salvage-facts').waitFor({ timeout: 60_000 });
    await page.getByTestId('wizard-salvage-raw').check();
    await page.getByTestId('wizard-salvage').click();
    const verified = page.getByTestId('wizard-verified');
    await verified.waitFor({ timeout: 60_000 });
    expect(await verified.innerText()).toContain('A raw file has no tables to check');
    await shot(page, 'l1-unreadable-raw');
    const out = await page.getByTestId('wizard-salvaged-name').innerText();
    expect(out).toBe('l1-unreadable.salvaged.raw');
    assertPatterns(join(root.dir, out), 'raw');
    expect(sha256(file)).toBe(original);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('an overwritten L2 table: the repair would leave it, salvage is recommended and lists the lost range', async () => {
    const file = join(root.dir, 'l2-overwritten.qcow2');
    const original = sha256(file);
    const { page, errors } = await openInWizard('l2-overwritten.qcow2');
    await page.getByTestId('wizard-diagnose').click();
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor({ timeout: 60_000 });
    expect(await verdict.getAttribute('data-verdict')).toBe('corrupt');
    expect(await page.getByTestId('wizard-salvage-advice').innerText()).toContain(
      'cannot be repaired without guessing',
    );
    await shot(page, 'l2-explain');
    await page.getByTestId('wizard-to-action').click();
    expect(await page.getByTestId('wizard-action-salvage').isChecked()).toBe(true);
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-salvage-facts').waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('salvage-recovered').innerText()).toBe('128 KiB');
    expect(await page.getByTestId('wizard-salvage-lost').innerText()).toContain('0x20000000–0x40000000');
    await shot(page, 'l2-preview');
    await page.getByTestId('wizard-salvage').click();
    const verified = page.getByTestId('wizard-verified');
    await verified.waitFor({ timeout: 60_000 });
    expect(await verified.getAttribute('data-ok')).toBe('true');
    expect(await page.getByTestId('wizard-salvage-outcome').innerText()).toContain('0x20000000–0x40000000');
    await shot(page, 'l2-verified');
    const out = join(root.dir, await page.getByTestId('wizard-salvaged-name').innerText());
    expect(qemuCheck(out).status).toBe(0);
    qemuIo(out, ['read -P 0x5a 0 128k', 'read -P 0 600M 64k']); // recovered; lost (reads as zeros, as reported)
    expect(sha256(file)).toBe(original);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('opening an unopenable image from the file list offers salvage, which leads to the wizard', async () => {
    const page = await browser.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(served.url);
    await page.getByTestId('open-header-zeroed.qcow2').click();
    await page.getByTestId('error-salvage').waitFor();
    await shot(page, 'open-error');
    await page.getByTestId('error-salvage').click();
    const verdict = page.getByTestId('wizard-verdict');
    await verdict.waitFor();
    expect(await verdict.getAttribute('data-verdict')).toBe('unopenable');
    expect(await page.getByTestId('wizard-image').innerText()).toBe('header-zeroed.qcow2');
    expect(await page.getByTestId('error').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('cancelling the salvage scan writes nothing and offers to scan again', async () => {
    const before = readdirSync(root.dir).sort();
    const { page, errors } = await openInWizard('header-zeroed.qcow2', slow); // every scan waits 30 s first (test hook)
    await page.getByTestId('wizard-to-action').click();
    await page.getByTestId('wizard-to-preview').click();
    await page.getByTestId('wizard-cancel').click();
    await page.getByTestId('wizard-salvage-rescan').waitFor();
    expect(await page.getByTestId('wizard-salvage-preview').innerText()).toContain('nothing was written');
    expect(await page.getByTestId('wizard-error').count()).toBe(0);
    expect(readdirSync(root.dir).sort()).toEqual(before);
    await shot(page, 'scan-cancelled');
    expect(errors).toEqual([]);
    await page.close();
  });
});
