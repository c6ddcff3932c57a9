// The renderer (Svelte 5 + TypeScript, including every view in the registry) type-checks with
// svelte-check against the contract's types.
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/qemu.js';

describe('renderer type-check', () => {
  it('svelte-check finds no errors', () => {
    const r = run('node', [
      'node_modules/svelte-check/bin/svelte-check',
      '--tsconfig',
      'renderer/tsconfig.json',
      '--threshold',
      'error',
      '--output',
      'machine',
    ]);
    const errors = r.stdout.split('\n').filter((l) => / ERROR /.test(l));
    expect(errors).toEqual([]);
    expect(r.stdout).toMatch(/COMPLETED \d+ FILES 0 ERRORS/);
    expect(Number(/COMPLETED (\d+) FILES/.exec(r.stdout)?.[1])).toBeGreaterThan(10);
    expect(r.status).toBe(0);
  });
});
