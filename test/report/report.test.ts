import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inflateSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import { createQcow2, patchU16, patchU64, qemuCheck, qemuIo, run, sha256, tempDir } from '../helpers/qemu.js';
import { launchChromium, type Chromium } from '../e2e/harness.js';
import { crc32, encodePng } from '../../engine/report/png.js';
import { clusterMapPicture, REPORT_ROLE_COLORS } from '../../engine/report/cluster-map-picture.js';
import { FileIO } from '../../engine/io/file-io.js';
import { checkImage, openForCheck } from '../../engine/check/index.js';
import { reportContent } from '../../engine/report/write-report.js';
import { repairExtras } from '../../engine/report/report-data.js';
import { repairFile } from '../../engine/repair/index.js';

const t = tempDir('q2d-report-');
let browser: Chromium;
beforeAll(async () => {
  browser = await launchChromium({ colorScheme: 'light', width: 1100, height: 1400 });
});
afterAll(async () => {
  await browser.close();
  t.cleanup();
});

/** 64 MiB image, data clusters 5, 6 and 7, then damaged: a leak, a cluster in use but marked free. */
function damagedImage(name: string): string {
  const f = join(t.dir, name);
  createQcow2(f, '64M');
  qemuIo(f, ['write -P 0x5a 0 128k', 'write -P 0xa5 1M 64k']);
  patchU64(f, 0x40000 + 16 * 8, 0); // cluster 7 leaked
  patchU16(f, 0x20000 + 5 * 2, 0); // cluster 5 referenced, refcount 0
  return f;
}

/** Decode our PNG (filter 0 rows) back to RGB, to check what the picture shows. */
function decodePng(png: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const b = Buffer.from(png);
  expect(b.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let at = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  while (at < b.length) {
    const len = b.readUInt32BE(at);
    const type = b.toString('latin1', at + 4, at + 8);
    const data = b.subarray(at + 8, at + 8 + len);
    expect(b.readUInt32BE(at + 8 + len)).toBe(crc32(b.subarray(at + 4, at + 8 + len)));
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([data[8], data[9]]).toEqual([8, 2]);
    }
    if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (1 + width * 3)]).toBe(0);
    rgb.set(raw.subarray(y * (1 + width * 3) + 1, (y + 1) * (1 + width * 3)), y * width * 3);
  }
  return { width, height, rgb };
}

const hexRgb = (css: string): number[] => [1, 3, 5].map((i) => parseInt(css.slice(i, i + 2), 16));

describe('PNG encoder and cluster map picture', () => {
  it('encodes a picture zlib and CRC-32 decode back to the same pixels', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const rgb = new Uint8Array(3 * 4 * 2).map((_, i) => (i * 37) & 0xff);
    const back = decodePng(encodePng(4, 2, rgb));
    expect(back.width).toBe(4);
    expect(back.rgb).toEqual(rgb);
  });

  it('draws one cell per cluster in the role colours, the most telling role winning in shared cells', () => {
    const roles = new Uint8Array([1, 4, 5, 2, 3, 12, 12, 14, 0, 15]);
    const pic = clusterMapPicture(roles);
    const { width, rgb } = decodePng(pic.png);
    const cell = width / roles.length;
    for (let i = 0; i < roles.length; i++) {
      const x = Math.floor(i * cell + cell / 2);
      const y = Math.floor(cell / 2);
      expect([...rgb.subarray((y * width + x) * 3, (y * width + x) * 3 + 3)]).toEqual(
        hexRgb(REPORT_ROLE_COLORS[roles[i]!]!),
      );
    }
    expect(pic.legend.find((l) => l.name === 'data')?.clusters).toBe(2);
    // A million clusters fit in a bounded picture; a corrupt cluster is never hidden by data.
    const big = new Uint8Array(1_000_000).fill(12);
    big[500_000] = 15;
    const p2 = clusterMapPicture(big);
    expect(p2.clustersPerCell).toBeGreaterThan(1);
    const d2 = decodePng(p2.png);
    const red = hexRgb(REPORT_ROLE_COLORS[15]!);
    let found = false;
    for (let i = 0; i < d2.rgb.length; i += 3)
      if (d2.rgb[i] === red[0] && d2.rgb[i + 1] === red[1] && d2.rgb[i + 2] === red[2]) found = true;
    expect(found).toBe(true);
  });
});

describe('check --report', () => {
  it('writes a self-contained HTML report that opens in Chromium and shows the verdict', async () => {
    const f = damagedImage('damaged.qcow2');
    const before = sha256(f);
    const html = join(t.dir, 'damaged-report.html');
    const r = run('node', ['bin/qcow2-doctor.cjs', 'check', '--report', html, f]);
    expect(r.status).toBe(2);
    expect(sha256(f)).toBe(before);
    const text = readFileSync(html, 'utf8');
    // Self-contained: no scripts, no links or sources other than inline data.
    expect(text).not.toMatch(/<script|<link|@import|url\(/i);
    expect([...text.matchAll(/\ssrc="([^"]*)"/g)].every((m) => m[1]!.startsWith('data:image/png;base64,'))).toBe(true);
    expect(text).toContain("default-src 'none'");

    const page = await browser.context.newPage();
    const failedRequests: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith('file:') && !req.url().startsWith('data:')) failedRequests.push(req.url());
    });
    await page.goto(pathToFileURL(html).href);
    await expect.poll(() => page.locator('#verdict').getAttribute('data-verdict')).toBe('corrupt');
    const verdict = await page.locator('#verdict').innerText();
    expect(verdict).toContain('Damaged');
    expect(verdict).toContain('Repair is recommended');
    // The leaked cluster still holds the data the damaged entry mapped: not "no harm to your data".
    expect(verdict).toContain(
      '1 cluster is leaked; 1 of them still holds data no table maps any more: possibly guest data a damaged table lost.',
    );
    expect(verdict).toContain('1 cluster is in use but marked free: the next write could overwrite your data.');
    expect(await page.locator('[data-kind="refcount-zero-referenced"] h3').innerText()).toContain(
      'Clusters in use but marked free',
    );
    expect(await page.locator('[data-kind="leaked-cluster"]').count()).toBe(1);
    const natural = await page.locator('.map img').evaluate((img) => (img as HTMLImageElement).naturalWidth);
    expect(natural).toBeGreaterThan(0);
    expect(failedRequests).toEqual([]);
    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: resolve('test-results/report-damaged.png'), fullPage: true });
    await page.close();
  });

  it("writes a JSON report with the verdict, QEMU's counters and every finding", () => {
    const f = damagedImage('damaged-json.qcow2');
    const json = join(t.dir, 'report.json');
    expect(run('node', ['bin/qcow2-doctor.cjs', 'check', '--report', json, f]).status).toBe(2);
    const rep = JSON.parse(readFileSync(json, 'utf8'));
    expect(rep.format).toBe('qcow2-doctor-report');
    expect(rep.verdict.word).toBe('corrupt');
    const q = qemuCheck(f).json!;
    for (const k of ['corruptions', 'leaks', 'check-errors', 'image-end-offset', 'allocated-clusters'])
      expect(rep.check.qemuJson[k]).toBe(q[k]);
    expect(rep.lostTables).toEqual({ tables: 0, l2Tables: 0, bytesAtRisk: 0 });
    expect(rep.findings.map((g: { kind: string }) => g.kind)).toEqual([
      'copied-l2',
      'refcount-zero-referenced',
      'leaked-cluster',
      'orphaned-data',
    ]);
    expect(rep.anomalies.length).toBeGreaterThanOrEqual(2);
    expect(rep.map.legend.find((l: { name: string }) => l.name === 'leaked').clusters).toBe(1);
    expect(rep.image).toMatchObject({ virtualSize: 64 << 20, clusterSize: 65536, version: 3, dirty: false });
  });

  it('says plainly when an image is clean, and refuses an unknown report extension', () => {
    const f = join(t.dir, 'clean.qcow2');
    createQcow2(f, '16M');
    qemuIo(f, ['write -P 1 0 64k']);
    const html = join(t.dir, 'clean.html');
    expect(run('node', ['bin/qcow2-doctor.cjs', 'check', '--report', html, f]).status).toBe(0);
    const text = readFileSync(html, 'utf8');
    expect(text).toContain('data-verdict="clean"');
    expect(text).toContain('No problems were found. Nothing needs to be done.');
    const bad = run('node', ['bin/qcow2-doctor.cjs', 'check', '--report', join(t.dir, 'r.txt'), f]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('report file must end in .html or .json');
  });

  it('includes the repair plan and its result, before and after, when there was a repair', async () => {
    const f = damagedImage('to-repair.qcow2');
    const copy = join(t.dir, 'repaired.qcow2');
    const outcome = await repairFile({ image: f, mode: 'all', outputImage: copy });
    expect(qemuCheck(copy).status).toBe(0);
    const io = await FileIO.open(f);
    const image = await openForCheck(io);
    const result = await checkImage(image, { roleMap: true });
    const html = await reportContent('html', { ...result, filename: f }, image, repairExtras(outcome));
    await io.close();
    expect(html).toContain('<h2>Repair</h2>');
    expect(html).toContain('data-verdict="clean"'); // the after-verdict
    expect(html).toMatch(/Refcount structure rebuilt<\/td><td>yes/);
    const page = await browser.context.newPage();
    await page.setContent(html);
    expect(await page.locator('#after-verdict').innerText()).toContain('No problems were found.');
    expect(await page.locator('#repair-verdict').innerText()).toContain('After the repair: Clean');
    expect(await page.locator('#verdict').innerText()).toContain('Before the repair: Damaged');
    await page.screenshot({ path: resolve('test-results/report-repaired.png'), fullPage: true });
    await page.close();
  });
});
