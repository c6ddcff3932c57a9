// electron-builder.yml is checked offline against electron-builder's own JSON schema.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
type Cfg = Record<string, unknown> & {
  linux?: { target?: string[] };
  mac?: { target?: string[] };
  win?: { target?: string[] };
  fileAssociations?: Array<{ ext: string }>;
  icon?: string;
};
const { getConfig, validateConfiguration } = require('app-builder-lib/out/util/config/config') as {
  getConfig(dir: string, path: string | null, fromOptions: unknown): Promise<Cfg>;
  validateConfiguration(c: Cfg, logger: unknown): Promise<void>;
};
const { DebugLogger } = require('builder-util/out/DebugLogger') as { DebugLogger: new (enabled: boolean) => unknown };

describe('electron-builder.yml', () => {
  it('validates against the schema and names every target, the icon and the file associations', async () => {
    const root = resolve('.');
    const cfg = await getConfig(root, resolve('electron-builder.yml'), null);
    await validateConfiguration(cfg, new DebugLogger(false));
    expect(cfg.linux?.target).toEqual(['AppImage', 'deb']);
    expect(cfg.mac?.target).toEqual(['dmg']);
    expect(cfg.win?.target).toEqual(['nsis']);
    expect(cfg.fileAssociations?.map((f) => f.ext)).toEqual(['qcow2', 'qcow']);
    expect(cfg.icon).toBe('resources/icon.png');
    const png = readFileSync(resolve(root, 'resources/icon.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBeGreaterThanOrEqual(512); // width: macOS needs 512+
  });

  it('flips the Electron fuses: no RunAsNode, NODE_OPTIONS or inspect arguments; cookies encrypted; app only from a checked asar', async () => {
    const cfg = await getConfig(resolve('.'), resolve('electron-builder.yml'), null);
    await validateConfiguration(cfg, new DebugLogger(false));
    expect(cfg.asar).toBe(true);
    expect(cfg.electronFuses).toEqual({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableCookieEncryption: true,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
    });
  });

  it('rejects a configuration with an unknown key (the schema check is real)', async () => {
    const cfg = await getConfig(resolve('.'), resolve('electron-builder.yml'), null);
    await expect(validateConfiguration({ ...cfg, notAnOption: true }, new DebugLogger(false))).rejects.toThrow(
      /notAnOption|unknown property/i,
    );
  });

  it('packages the bundled samples it refers to', () => {
    expect(existsSync(resolve('resources/samples/sample-snapshots.qcow2'))).toBe(true);
    expect(existsSync(resolve('resources/samples/sample-damaged.qcow2'))).toBe(true);
  });
});
