import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One embedded Temporal server for the whole run (see test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: integration files train models and run workers; keep them from starving each other.
    fileParallelism: false,
    pool: 'forks',
  },
});
