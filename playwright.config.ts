import { defineConfig } from '@playwright/test';
import { CHROMIUM_BASE_ARGS, CHROMIUM_PATH, WEBGPU_ARGS } from './e2e/chromium';

// Playwright runs the real pages in Debian's Chromium with WebGPU on SwiftShader, which runs
// kernels on the CPU: hence one worker and generous timeouts.

// scripts/test-all.mjs picks a free port and passes it here; the default is for `npx playwright test`.
const port = Number(process.env.KVSCOPE_E2E_PORT ?? 5317);
const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: 'e2e',
  // The eval runner (tasks x policies x budgets) is not part of the test suite.
  testIgnore: ['eval/**'],
  outputDir: 'test-results/e2e',
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 180_000,
  expect: { timeout: 60_000 },
  // Bounds a whole run (scripts/test-all.mjs kills it at 8 minutes; this reports first).
  globalTimeout: 7 * 60_000,
  reporter: [['list']],
  use: {
    baseURL,
    headless: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    navigationTimeout: 60_000,
    actionTimeout: 60_000,
  },
  projects: [
    {
      name: 'chromium-webgpu',
      use: {
        browserName: 'chromium',
        launchOptions: { executablePath: CHROMIUM_PATH, args: [...CHROMIUM_BASE_ARGS, ...WEBGPU_ARGS] },
      },
    },
  ],
  webServer: {
    command: `npx vite --host 127.0.0.1 --port ${port} --strictPort`,
    url: baseURL,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
