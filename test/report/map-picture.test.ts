// The report's cluster map: individual clusters for small images, a grid (not a strip) for large ones,
// rulers in clusters and bytes, and the app's colours.
import { describe, expect, it } from 'vitest';
import { clusterMapPicture, pictureColumns, REPORT_ROLE_COLORS } from '../../engine/report/cluster-map-picture.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { createQcow2, qemuIo, run, tempDir } from '../helpers/qemu.js';
import { HOST_PALETTE } from '../../renderer/src/map/palette.js';

const t = tempDir('q2d-map-picture-');
afterAll(t.cleanup);

describe('report map picture', () => {
  it('uses the colours of the app', () => {
    expect(REPORT_ROLE_COLORS).toEqual(HOST_PALETTE.colors);
  });

  it('a small image: one big cell per cluster', () => {
    const p = clusterMapPicture(new Uint8Array([1, 4, 5, 2, 3, 12, 12, 14, 15]));
    expect(p.clustersPerCell).toBe(1);
    expect(p.cellPx).toBe(32);
    expect([p.width, p.height]).toEqual([9 * 32, 32]);
  });

  it('a large image: a grid about twice as wide as high, not a 768×15 strip', () => {
    for (const n of [1000, 30_000, 1_000_000]) {
      const p = clusterMapPicture(new Uint8Array(n).fill(12));
      expect(p.width, `${n}`).toBeLessThanOrEqual(800);
      expect(p.height, `${n}`).toBeGreaterThanOrEqual(p.width / 4);
      expect(p.cols % 8).toBe(0);
      expect(p.cols * Math.round(p.height / p.cellPx) * p.clustersPerCell).toBeGreaterThanOrEqual(n);
    }
    expect(pictureColumns(1000)).toBe(48);
  });

  it('the HTML report of a real image shows rulers in clusters and bytes next to the picture, and the legend', () => {
    const f = join(t.dir, 'a.qcow2');
    createQcow2(f, '64M', { cluster_size: 4096 });
    qemuIo(f, ['write -P 0x11 0 4M']);
    const out = join(t.dir, 'a.html');
    expect(run('node', ['bin/qcow2-doctor.cjs', 'check', '--report', out, f]).status).toBe(0);
    const html = readFileSync(out, 'utf8');
    const m = /<img alt="Map of the image's clusters by role" width="(\d+)" height="(\d+)"/.exec(html)!;
    expect(Number(m[2])).toBeGreaterThanOrEqual(Number(m[1]) / 4);
    expect(html).toContain('class="ruler rtop"');
    expect(html).toContain('<span style="left:0px">+0<br>+0 B</span>');
    expect(html).toMatch(/<span style="top:\d+px">#\d+<br>0x[0-9a-f]+<\/span>/);
    expect(html).toMatch(/data: \d+/);
  });
});
