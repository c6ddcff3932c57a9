// The write-history view in Chromium on logs QEMU recorded through blklogwrites: open a log with its
// base, scrub by keyboard (the map follows, the current entry's clusters named by role), judge the
// crash states (QEMU's own log: none corrupt; the same log without flushes: caught), explain a
// failing state and jump to the entries that cause it. axe-clean, photographed at both sizes.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { encodeDmLog, readDmLog } from '../../engine/lab/dm-log.js';
import { createQcow2, qemuImg, run, tempDir } from '../helpers/qemu.js';
import { axeViolations, screenshots } from './a11y.js';
import { type Chromium, launchChromium, type Served, startServe } from './harness.js';

const root = tempDir('q2d-history-e2e-');
let served: Served;
let browser: Chromium;

beforeAll(async () => {
  const base = join(root.dir, 'base.qcow2');
  const disk = join(root.dir, 'disk.qcow2');
  const log = join(root.dir, 'qemu-log.bin');
  createQcow2(base, '16M', { cluster_size: 4096 });
  copyFileSync(base, disk);
  qemuImg('create', '-q', '-f', 'raw', log, '32M');
  const ops = [
    'write -P 0x11 0 64k',
    'write -P 0x12 2M 16k',
    'flush',
    'write -P 0x13 9M 8k',
    'discard 0 16k',
    'write -z 4M 8k',
    'write -P 0x14 12M 4k',
  ];
  const r = run('qemu-io', [
    '--image-opts',
    ...ops.flatMap((c) => ['-c', c]),
    `driver=qcow2,file.driver=blklogwrites,file.file.filename=${disk},file.log.filename=${log}`,
  ]);
  if (r.status !== 0) throw new Error(r.stderr);
  const dm = await readDmLog(new MemoryIO(new Uint8Array(readFileSync(log))));
  writeFileSync(join(root.dir, 'noflush-log.bin'), encodeDmLog(dm.log.filter((e) => e.kind !== 'flush')));
  [served, browser] = await Promise.all([startServe(root.dir), launchChromium({ width: 1440, height: 900 })]);
});

afterAll(async () => {
  await browser?.close();
  await served?.stop();
  root.cleanup();
});

/** Judge with a minute's budget (the shared test machine can be slow); wait for the counts. */
async function judge(page: Page): Promise<void> {
  await page.getByTestId('history-budget').selectOption('60');
  await page.getByTestId('history-judge').click();
  await page.getByTestId('history-counts').waitFor({ timeout: 90_000 });
}

async function openHistory(page: Page, log: string): Promise<number> {
  await page.getByTestId('history-log').selectOption(log);
  await page.getByTestId('history-base').selectOption('base.qcow2');
  await page.getByTestId('history-open').click();
  await page.getByTestId('history-summary').waitFor();
  await expect.poll(() => page.getByTestId('history-map').count()).toBe(1);
  return Number(/^(\d+) entries/.exec((await page.getByTestId('history-summary').textContent()) ?? '')?.[1]);
}

const position = async (page: Page) => Number(await page.getByTestId('history-position').getAttribute('data-position'));

describe('write history view', () => {
  it('scrubs a QEMU log by keyboard, judges it, and explains the failures of the log without flushes', async () => {
    const page = await browser.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(served.url);
    await page.getByTestId('tab-history').click();
    await page.getByTestId('history-workload').waitFor();

    const total = await openHistory(page, 'qemu-log.bin');
    expect(total).toBeGreaterThan(20);
    expect(await position(page)).toBe(total);
    // Keyboard: the slider goes to the base, then one entry at a time; the entry panel follows.
    const slider = page.getByTestId('history-slider');
    await slider.focus();
    await page.keyboard.press('Home');
    await expect.poll(() => position(page)).toBe(0);
    await expect.poll(() => page.getByTestId('history-entry').locator('h2').textContent()).toBe('No entry applied');
    await page.keyboard.press('ArrowRight');
    await expect.poll(() => position(page)).toBe(1);
    await expect.poll(() => page.getByTestId('history-entry').locator('h2').textContent()).toMatch(/^Entry #0: /);
    // The first data write of QEMU's log: its clusters are named "data".
    for (let i = 0; i < total; i++) {
      const roles = await page.getByTestId('history-entry').locator('li[data-role="12"]').count();
      if (roles > 0) break;
      await page.keyboard.press('ArrowRight');
      await expect.poll(() => position(page)).toBe(i + 2);
    }
    expect(await page.getByTestId('history-entry').locator('li[data-role="12"]').first().textContent()).toMatch(
      /clusters? \d+.*: data$/,
    );

    await judge(page);
    expect(await page.getByTestId('history-counts').getAttribute('data-corrupt')).toBe('0');
    await checked(page, 'history-qemu-log');

    await openHistory(page, 'noflush-log.bin');
    await judge(page);
    expect(Number(await page.getByTestId('history-counts').getAttribute('data-corrupt'))).toBeGreaterThan(0);
    const fail = page.getByTestId('history-fail').first();
    expect(await fail.getAttribute('data-verdict')).toBe('corrupt');
    await fail.click();
    const explain = page.getByTestId('history-explain');
    await explain.waitFor({ timeout: 30_000 });
    expect(await explain.getAttribute('data-verdict')).toBe('corrupt');
    expect(await explain.locator('.problems li').count()).toBeGreaterThan(0);
    const cause = page.getByTestId('history-cause').first();
    const text = (await cause.textContent()) ?? '';
    const at = Number(/^#(\d+) /.exec(text)?.[1]);
    await cause.click();
    await expect.poll(() => position(page)).toBe(at + 1);
    await page.getByTestId('history-cause').first().scrollIntoViewIfNeeded();
    await checked(page, 'history-failing-state');
    expect(errors).toEqual([]);
    await page.close();
  });
});

async function checked(page: Page, name: string): Promise<void> {
  const v = await axeViolations(page);
  expect(v, `${name}: ${JSON.stringify(v, null, 1)}`).toEqual([]);
  await screenshots(page, name);
}
