import { defineConfig } from 'vitest/config';

// `npm run dev` serves the page with hot reload; COHORT_CONSOLE_URL (the console backend's URL,
// e.g. the one `make dev` prints) receives its /api calls, so the page stays same-origin.
const backend = process.env.COHORT_CONSOLE_URL;

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
  },
  server: backend ? { proxy: { '/api': { target: backend } } } : {},
  test: {
    include: ['test/**/*.test.ts'],
  },
});
