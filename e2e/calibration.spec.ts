import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { ensureTinyChatModel, serveFixturesStatically } from './pages/fixture-model';

// The demo's layer-sharing (KVSharer) panel (src/ui/calibration.ts) in Chromium with WebGPU on
// SwiftShader: calibrate in the engine worker with a progress bar, see the result, download it,
// apply it, and see the KV allocation drop and the heatmap draw the sharing link. The model is
// the random-weight 3-layer fixture the chat e2e uses (25% of 3 layers = 1 shared layer); its
// similarities are arbitrary, so the threshold is -1 (accept the first candidate): this test is
// about the page and the worker, the search itself is tested in test/kv/calibrate.test.ts.

let modelPath = '';
test.beforeAll(async () => {
  modelPath = (await ensureTinyChatModel()).urlPath;
});

test.beforeEach(async ({ context }) => {
  await serveFixturesStatically(context);
});

/** "792.0 KiB" -> bytes (as the page's formatBytes writes them). */
function parseBytes(text: string | null): number {
  const m = /([\d.]+) (B|KiB|MiB|GiB)/.exec(text ?? '');
  if (!m) throw new Error(`no byte count in '${text}'`);
  return Number(m[1]) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2] as 'B' | 'KiB' | 'MiB' | 'GiB'];
}

/** Orange pixels in the heatmap's left gutter, where heatmap.ts draws a link from a shared layer to its source. */
function linkPixels(page: Page): Promise<number> {
  return page.evaluate(() => {
    const c = document.getElementById('heatmap') as HTMLCanvasElement;
    const data = c.getContext('2d')!.getImageData(20, 0, 34, c.height).data; // x 20..53: left of the cells (x >= 56)
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!];
      if (a > 60 && r > 150 && g < 170 && b < 120 && r - b > 80) n++;
    }
    return n;
  });
}

async function send(page: Page, prompt: string, turn: number): Promise<void> {
  await page.fill('#prompt', prompt);
  await page.click('#send');
  await expect(page.locator('.msg.assistant .meta').nth(turn)).toContainText('finish:', { timeout: 120_000 });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready');
}

test('calibrate layer sharing: progress to the end, result, download, apply -> KV bytes drop and the heatmap links the layers', async ({ page }, testInfo) => {
  await page.goto('/');
  await expect(page.locator('#calibrate')).toBeDisabled(); // no model yet
  await page.selectOption('#model-choice', 'url');
  await page.fill('#model-url', modelPath);
  await page.fill('#context-length', '256');
  await page.click('#load');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('#calibrate')).toBeEnabled();
  await expect(page.locator('#sharing-target-layers')).toHaveText('= 1 of 3 layers');

  // A first turn without sharing.
  await page.fill('#max-tokens', '4');
  await send(page, 'The grass is green; the sky is blue.', 0);
  await expect(page.locator('#sharing-measured')).toHaveAttribute('data-sharing', '');
  const unsharedExact = Number(await page.locator('#sharing-measured').getAttribute('data-allocated'));
  const unsharedShown = parseBytes(await page.locator('#m-kv-alloc').textContent());
  expect(unsharedExact).toBeGreaterThan(0);
  expect(await linkPixels(page)).toBe(0);

  // Record the progress bar and the page states while calibrating.
  const fractions: number[] = [];
  const states: string[] = [];
  await page.exposeFunction('recordFraction', (f: number) => fractions.push(f));
  await page.exposeFunction('recordState', (s: string) => states.push(s));
  await page.evaluate(() => {
    const w = window as unknown as { recordFraction: (f: number) => void; recordState: (s: string) => void };
    const row = document.getElementById('calibration-progress-row')!;
    new MutationObserver(() => w.recordFraction(Number(row.dataset.fraction))).observe(row, { attributes: true, attributeFilter: ['data-fraction'] });
    new MutationObserver(() => w.recordState(`${document.body.dataset.state}:${(document.getElementById('send') as HTMLButtonElement).disabled ? 'send-off' : 'send-on'}`)).observe(document.body, {
      attributes: true,
      attributeFilter: ['data-state'],
    });
  });
  await page.fill('#sharing-threshold', '-1');
  await page.fill('#sharing-samples', '3');
  await page.fill('#sharing-tokens', '16');
  await page.click('#calibrate');
  await expect(page.locator('#calibration-result')).toBeVisible({ timeout: 120_000 });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready');
  await expect(page.locator('#sharing-status')).toContainText('Calibration finished');

  // The bar went up step by step and reached the end.
  await expect(page.locator('#calibration-progress')).toHaveJSProperty('value', 1);
  await expect(page.locator('#calibration-progress-text')).toHaveText('Done');
  await expect.poll(() => fractions.at(-1)).toBe(1);
  for (let i = 1; i < fractions.length; i++) expect(fractions[i]!).toBeGreaterThanOrEqual(fractions[i - 1]!);
  expect(fractions.filter((f) => f > 0 && f < 1).length).toBeGreaterThanOrEqual(2);
  // Chatting was off while it ran.
  expect(states).toContain('calibrating:send-off');
  expect(states.at(-1)).toBe('ready:send-on');

  // The result: one pair (a later layer reads an earlier one), the similarity, the bytes saved.
  const pair = page.locator('#calibration-pairs li');
  await expect(pair).toHaveCount(1);
  const layer = Number(await pair.getAttribute('data-layer'));
  const source = Number(await pair.getAttribute('data-source'));
  expect(source).toBeLessThan(layer);
  await expect(pair).toHaveText(`layer ${layer} → reads layer ${source}’s cache`);
  await expect(page.locator('#calibration-similarity')).toContainText(/-?\d\.\d{4} \(mean cosine similarity/);
  const saved = Number(await page.locator('#calibration-saved').getAttribute('data-saved'));
  expect(saved).toBeGreaterThan(0);
  expect(Number(await page.locator('#calibration-saved').getAttribute('data-unshared'))).toBe(unsharedExact);
  await page.screenshot({ path: testInfo.outputPath('calibration-result.png'), fullPage: true });

  // Download: kv-sharing.json in the map format.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-sharing')]);
  expect(download.suggestedFilename()).toBe('kv-sharing.json');
  const file = testInfo.outputPath('kv-sharing.json');
  await download.saveAs(file);
  const json = JSON.parse(readFileSync(file, 'utf8'));
  expect(json.map).toEqual({ [String(layer)]: source });
  expect(json.model).toMatchObject({ numLayers: 3 });
  expect(json.settings).toMatchObject({ threshold: -1, targetSharedLayers: 1, samples: 3 });

  // Apply, next turn: the cache allocates exactly the predicted bytes, and the displays show the drop.
  await page.click('#apply-sharing');
  await expect(page.locator('#sharing-status')).toContainText(`Applied: layer ${layer} reads layer ${source}`);
  await send(page, 'And the grass?', 1);
  await expect(page.locator('#sharing-measured')).toHaveAttribute('data-sharing', `${layer}>${source}`);
  const sharedExact = Number(await page.locator('#sharing-measured').getAttribute('data-allocated'));
  expect(sharedExact).toBe(unsharedExact - saved);
  expect(parseBytes(await page.locator('#m-kv-alloc').textContent())).toBeLessThan(unsharedShown);
  await expect(page.locator('#sharing-measured')).toContainText('less)');
  await expect(page.locator('#token-view')).not.toBeEmpty();

  // The heatmap draws the link, and the shared layer's cells say whose cache they read.
  await expect.poll(() => linkPixels(page)).toBeGreaterThan(20);
  const point = await page.evaluate((l) => {
    const c = document.getElementById('heatmap') as HTMLCanvasElement;
    const r = c.getBoundingClientRect();
    const nKV = 2;
    const cellW = Math.max(14, Math.floor((c.width - 56 - 8) / nKV));
    const cellH = Math.max(14, Math.floor((c.height - 22 - 8) / 3));
    return { x: ((56 + cellW / 2) * r.width) / c.width, y: ((22 + l * cellH + cellH / 2) * r.height) / c.height };
  }, layer);
  await page.locator('#heatmap').hover({ position: point });
  await expect(page.locator('#heatmap-tip')).toContainText(`layer ${layer}, KV head 0`);
  await expect(page.locator('#heatmap-tip')).toContainText(`reads layer ${source}'s cache`);
  await page.screenshot({ path: testInfo.outputPath('calibration-applied.png'), fullPage: true });

  // The downloaded map loads back; a bad one is refused with the engine's typed error.
  await page.setInputFiles('#sharing-file', file);
  await expect(page.locator('#sharing-status')).toContainText('Loaded kv-sharing.json');
  await expect(page.locator('#calibration-summary')).toContainText('Loaded kv-sharing.json: 1 of 3 layers');
  await page.setInputFiles('#sharing-file', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from('{"1": 2}') });
  await expect(page.locator('#sharing-status')).toContainText('InvalidArgumentError (invalid-argument)');
  await expect(page.locator('#sharing-status')).toHaveClass(/error/);

  // Remove sharing: the next turn allocates the unshared bytes again.
  await page.click('#clear-sharing');
  await expect(page.locator('#sharing-status')).toContainText('Sharing removed');
  await send(page, 'Once more.', 2);
  await expect(page.locator('#sharing-measured')).toHaveAttribute('data-sharing', '');
  expect(Number(await page.locator('#sharing-measured').getAttribute('data-allocated'))).toBe(unsharedExact);
  await expect.poll(() => linkPixels(page)).toBe(0);

  // Cancel: a full-size calibration (30 samples of 64 tokens) stops, and the page is usable again.
  await page.fill('#sharing-samples', '30');
  await page.fill('#sharing-tokens', '64');
  await page.click('#calibrate');
  await expect(page.locator('#calibration-cancel')).toBeVisible();
  await page.click('#calibration-cancel');
  await expect(page.locator('#sharing-status')).toContainText('Calibration cancelled', { timeout: 60_000 });
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready');
  await expect(page.locator('#calibration-cancel')).toBeHidden();
  await send(page, 'After the cancel.', 3);
  await expect(page.locator('#sharing-measured')).toHaveAttribute('data-sharing', '');
});
