// Render resources/icon.svg to resources/icon.png (1024×1024) with Debian's Chromium, for
// electron-builder (it derives .ico/.icns and the Linux icon sizes from this PNG).
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';

const svg = readFileSync('resources/icon.svg', 'utf8');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1024, height: 1024 } });
await page.setContent(
  `<html><body style="margin:0;background:transparent">${svg.replace('width="256" height="256"', 'width="1024" height="1024"')}</body></html>`,
);
await page.screenshot({ path: 'resources/icon.png', omitBackground: true });
await browser.close();
