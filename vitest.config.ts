import { defineConfig } from 'vitest/config';

// One forked worker: the native core already uses every core, and addon state stays per process.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
  },
});
