import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Tests shell out to qemu-img/qemu-io and Chromium; two cores here.
    pool: 'forks',
    maxWorkers: 2,
    // Polls in the browser tests wait for real checks and repairs; on two busy cores one second is
    // not enough, and a poll only waits as long as its condition is false.
    expect: { poll: { timeout: 30_000 } },
    globalSetup: ['test/global-setup.ts'],
  },
});
