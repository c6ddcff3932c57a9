// Salvage campaign: 512-byte clusters, 32 L1 entries — every damage kind, salvaged to raw and to qcow2, measured against
// qemu-img convert of the undamaged image.
import { afterAll, describe, expect, it } from 'vitest';
import { buildImage, damagesFor, IMAGES, runScenario, formatTable, type ScenarioResult } from '../../bench/sections/50-salvage.js';
import { tempDir } from '../helpers/qemu.js';
import { assertScenario } from './campaign-checks.js';

const t = tempDir('q2d-salvage-');
afterAll(t.cleanup);

for (const name of ['c512-full']) {
  describe(`salvage campaign: ${name}`, () => {
    const spec = IMAGES.find((s) => s.name === name)!;
    const img = buildImage(t.dir, spec);
    const results: ScenarioResult[] = [];
    damagesFor(img).forEach((d, n) => {
      it(`${d.kind} (${d.where})`, async () => {
        const r = await runScenario(t.dir, img, d, n, { qcow2: true });
        results.push(r);
        assertScenario(r);
      });
    });
    it('prints the recovery table', () => {
      expect(results.length).toBe(damagesFor(img).length);
      console.log(formatTable(results).join('\n'));
    });
  });
}
