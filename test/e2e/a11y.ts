// Accessibility checks in the end-to-end tests: axe-core (node_modules/axe-core/axe.min.js, loaded
// into the page) over WCAG 2.1 A and AA rules; a serious or critical violation fails the test.
// And screenshots of every view at the two window sizes people use most (1440×900, 1024×700).
import { mkdirSync, readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';

let axeSource: string | null = null;

export interface Violation {
  id: string;
  impact: string;
  help: string;
  nodes: string[];
}

/** Serious and critical WCAG 2.1 AA violations on the page as it is now. */
export async function axeViolations(page: Page): Promise<Violation[]> {
  axeSource ??= readFileSync('node_modules/axe-core/axe.min.js', 'utf8');
  // Evaluated through the DevTools protocol: the app's Content-Security-Policy (script-src 'self') stays as it is.
  if (!(await page.evaluate('typeof globalThis.axe !== "undefined"'))) await page.evaluate(axeSource);
  const result = (await page.evaluate(`globalThis.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    resultTypes: ['violations'],
  })`)) as { violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }> };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
}

export const SIZES = [
  { width: 1440, height: 900 },
  { width: 1024, height: 700 },
] as const;

/** Screenshots of the page at both sizes into test-results/screenshots/NAME-WxH.png; back to the first size. */
export async function screenshots(page: Page, name: string): Promise<string[]> {
  mkdirSync('test-results/screenshots', { recursive: true });
  const out: string[] = [];
  for (const s of [...SIZES].reverse()) {
    await page.setViewportSize(s);
    await page.waitForTimeout(150); // the map canvas follows its size on the next frame
    const path = `test-results/screenshots/${name}-${s.width}x${s.height}.png`;
    await page.screenshot({ path });
    out.push(path);
  }
  return out;
}
