// electron/ type-checks against Electron's own electron.d.ts (the binary is not needed for this).
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/qemu.js';

describe('electron/ type-check', () => {
  it('passes tsc -p electron/tsconfig.json against electron.d.ts', () => {
    const r = run('node', [
      'node_modules/typescript/bin/tsc',
      '-p',
      'electron/tsconfig.json',
      '--noEmit',
      '--listFiles',
    ]);
    const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors).toEqual([]);
    expect(r.status).toBe(0);
    // The check really saw Electron's declarations and our main/preload sources.
    expect(r.stdout).toMatch(/node_modules\/electron\/electron\.d\.ts/);
    expect(r.stdout).toMatch(/electron\/main\.ts/);
  });
});
