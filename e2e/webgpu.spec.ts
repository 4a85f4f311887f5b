import { chromium, expect, test, type Page } from '@playwright/test';
import { CHROMIUM_BASE_ARGS, CHROMIUM_PATH } from './chromium';
import type { GpuPageResult } from './pages/gpu';

const PAGE = '/e2e/pages/gpu.html';

async function pageResult(page: Page): Promise<GpuPageResult> {
  const handle = await page.waitForFunction(() => window.kvscopeResult, undefined, { timeout: 120_000 });
  return (await handle.jsonValue()) as GpuPageResult;
}

test('a localhost page runs a compute kernel through kvscope Gpu', async ({ page }) => {
  await page.goto(PAGE);
  const result = await pageResult(page);
  if (!result.ok) throw new Error(`Gpu.create() or the kernel failed: ${result.name} (${result.code}): ${result.message}`);
  expect(result.output).toHaveLength(200);
  expect(result.output).toEqual(Array.from({ length: 200 }, (_, i) => i + 1000));
  test.info().annotations.push({ type: 'adapter', description: `${result.adapter.vendor} ${result.adapter.architecture}` });
});

test('a browser without the WebGPU flags has no adapter: Gpu.create() rejects with NoWebGPUError', async ({ baseURL }) => {
  // Chromium still exposes navigator.gpu here, but without SwiftShader on a GPU-less machine
  // requestAdapter() resolves to null (--disable-gpu keeps it so on machines with a GPU).
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_BASE_ARGS, '--disable-gpu'] });
  try {
    const page = await browser.newPage({ baseURL });
    await page.goto(PAGE);
    const result = await pageResult(page);
    expect(result).toMatchObject({ ok: false, name: 'NoWebGPUError', code: 'no-webgpu' });
    await expect(page.locator('#result')).toContainText('NoWebGPUError');
  } finally {
    await browser.close();
  }
});

test('an insecure origin has no navigator.gpu: Gpu.create() rejects with NoWebGPUError', async ({ page, baseURL }) => {
  // WebGPU exists only in secure contexts; serve the same page from a plain-http, non-local
  // origin by proxying its requests to the dev server.
  const insecure = 'http://kvscope.invalid';
  await page.route(`${insecure}/**`, async (route) => {
    const url = new URL(route.request().url());
    const response = await route.fetch({ url: `${baseURL}${url.pathname}${url.search}` });
    await route.fulfill({ response });
  });
  await page.goto(`${insecure}${PAGE}`);
  expect(await page.evaluate(() => ({ secure: window.isSecureContext, gpu: 'gpu' in navigator }))).toEqual({
    secure: false,
    gpu: false,
  });
  const result = await pageResult(page);
  expect(result).toMatchObject({ ok: false, name: 'NoWebGPUError', code: 'no-webgpu' });
  expect(result.ok === false && result.message).toContain('navigator.gpu is missing');
});
