// The planner's overlay (planned writes laid over a read-only image) against a plain byte array:
// random writes that overlap, split and extend earlier ones, then reads across them.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryIO } from '../../engine/io/memory-io.js';
import { OverlayIO } from '../../engine/repair/overlay-io.js';

const BASE = 4096;

describe('OverlayIO', () => {
  it('reads back what a plain array holds after any sequence of writes', async () => {
    const write = fc.record({
      offset: fc.integer({ min: 0, max: BASE + 512 }),
      length: fc.integer({ min: 0, max: 700 }),
      byte: fc.integer({ min: 1, max: 255 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(write, { maxLength: 60 }),
        fc.array(fc.tuple(fc.nat(BASE + 1300), fc.nat(1500)), { minLength: 1, maxLength: 10 }),
        async (writes, reads) => {
          const base = new Uint8Array(BASE).map((_, i) => (i * 7) & 0xff);
          const model = new Uint8Array(BASE + 1300);
          model.set(base);
          let length = BASE;
          const o = new OverlayIO(new MemoryIO(base, 'base', true), BASE);
          for (const w of writes) {
            const data = new Uint8Array(w.length).fill(w.byte);
            await o.write(w.offset, data);
            data.fill(0); // the overlay keeps its own copy
            model.fill(w.byte, w.offset, w.offset + w.length);
            if (w.length > 0) length = Math.max(length, w.offset + w.length);
          }
          expect(await o.size()).toBe(length);
          for (const [off, len] of reads) {
            const end = Math.min(off + len, length);
            expect(await o.read(off, len)).toEqual(end > off ? model.slice(off, end) : new Uint8Array(0));
          }
        },
      ),
      { numRuns: 300, seed: 20261207 },
    );
  });
});
