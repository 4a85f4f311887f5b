import { chromium, expect, test, type Page } from '@playwright/test';
import { CHROMIUM_BASE_ARGS, CHROMIUM_PATH } from './chromium';
import { ensureTinyChatModel, serveFixturesStatically } from './pages/fixture-model';
import { brownDocuments } from '../src/tasks/corpus-node';
import { corpusFiller, niah, Rng } from '../src/tasks/index';
import { numberMatch } from '../src/eval/scorers';

// The chat demo (index.html + src/ui) in Chromium with WebGPU on SwiftShader. Most tests load a
// random-weight model through the page's URL field (the answers are nonsense, but loading,
// streaming and the worker are real); the document-question test uses the bundled model.

let modelPath = '';
test.beforeAll(async () => {
  modelPath = (await ensureTinyChatModel()).urlPath;
});

test.beforeEach(async ({ context }) => {
  await serveFixturesStatically(context);
});

/** Records long tasks (> 50 ms) on the page's main thread from now on. */
async function watchLongTasks(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[] };
    w.longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.longTasks.push(e.duration);
    }).observe({ type: 'longtask', buffered: false });
  });
}

async function longestTask(page: Page): Promise<number> {
  return page.evaluate(() => Math.max(0, ...(window as unknown as { longTasks: number[] }).longTasks));
}

async function loadModel(page: Page, url: string): Promise<void> {
  await page.selectOption('#model-choice', 'url');
  await page.fill('#model-url', url);
  await page.click('#load');
}

test('load a model (progress seen), chat with streamed answers, metrics shown, main thread stays responsive', async ({ page }, testInfo) => {
  await page.goto('/');
  await expect(page.locator('#webgpu-missing')).toBeHidden();
  await watchLongTasks(page);

  // Progress: the bar shows bytes while the weights download, then the upload.
  const progressTexts: string[] = [];
  await page.exposeFunction('recordProgress', (t: string) => progressTexts.push(t));
  await page.evaluate(() => {
    const el = document.getElementById('progress-text')!;
    new MutationObserver(() => (window as unknown as { recordProgress: (t: string) => void }).recordProgress(el.textContent ?? '')).observe(el, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  await loadModel(page, modelPath);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('#model-status')).toContainText('Loaded');
  await expect(page.locator('#model-status')).toContainText('3 layers');
  expect(progressTexts.some((t) => /\d.* \/ .*\d/.test(t))).toBe(true); // "x KiB / y KiB"
  expect(progressTexts.at(-1)).toContain('Uploaded');
  await expect(page.locator('#policy option')).not.toHaveCount(0);
  await page.screenshot({ path: testInfo.outputPath('demo-loaded.png'), fullPage: true });

  // Streaming: the answer grows over several DOM updates before the turn ends.
  await page.evaluate(() => {
    const w = window as unknown as { answerUpdates: number };
    w.answerUpdates = 0;
    new MutationObserver(() => w.answerUpdates++).observe(document.getElementById('messages')!, { childList: true, characterData: true, subtree: true });
  });
  await page.fill('#max-tokens', '24');
  await page.fill('#prompt', 'The grass is green; the sky is blue. What colour is the sky?');
  await page.click('#send');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'generating');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  const answer = page.locator('.msg.assistant .body').last();
  await expect(page.locator('.msg.assistant .meta').last()).toContainText('finish:');
  const streamedUpdates = await page.evaluate(() => (window as unknown as { answerUpdates: number }).answerUpdates);
  const text = (await answer.textContent()) ?? '';
  const meta = (await page.locator('.msg.assistant .meta').last().textContent()) ?? '';
  const tokens = Number(/(\d+) tokens at/.exec(meta)?.[1] ?? 0);
  expect(tokens).toBeGreaterThan(0);
  // More than one token -> more than one update of the answer (plus the two bubbles and the meta line).
  if (tokens > 2 && text.length > 0) expect(streamedUpdates).toBeGreaterThan(4);
  await expect(page.locator('#m-decode')).toContainText('tok/s');
  await expect(page.locator('#m-kv')).toContainText('/');

  // A second turn reuses the cached conversation.
  await page.fill('#prompt', 'And the grass?');
  await page.click('#send');
  await expect(page.locator('.msg.assistant .meta').nth(1)).toContainText('finish:', { timeout: 120_000 });
  await expect(page.locator('#m-prefill')).toContainText(/[1-9]\d* reused/);
  await page.screenshot({ path: testInfo.outputPath('demo-chat.png'), fullPage: true });
  await expect(page.locator('#heatmap')).toHaveAttribute('data-snapshots', /[1-9]/);
  // Under the full cache every token of the conversation is kept.
  await expect.poll(() => page.locator('#token-view .tok.kept').count()).toBeGreaterThan(0);
  expect(await page.locator('#token-view .tok.evicted').count()).toBe(0);

  // A small StreamingLLM budget for the next turn: the footprint drops below a full cache.
  const names = await page.locator('#policy option').allTextContents();
  if (names.includes('streaming')) {
    await page.selectOption('#policy', 'streaming');
    await expect(page.locator('#budget-row')).toBeVisible();
    await page.fill('#budget', '16');
    await page.click('#apply-policy');
    await expect(page.locator('#policy-status')).toContainText('streaming, budget 16');
    await page.fill('#prompt', 'Numbers: 0 1 2 3 4 5 6 7 8 9. Which number comes after 4?');
    await page.click('#send');
    await expect(page.locator('.msg.assistant .meta').nth(2)).toContainText('finish:', { timeout: 120_000 });
    await expect(page.locator('#m-footprint')).toContainText('policy streaming, budget 16');
    const footprint = Number(/([\d.]+)%/.exec((await page.locator('#m-footprint').textContent()) ?? '')?.[1]);
    expect(footprint).toBeLessThan(100);
    // The token view shows what the chosen head forgot: evicted tokens appear, kept ones stay within the budget.
    await expect.poll(() => page.locator('#token-view .tok.evicted').count()).toBeGreaterThan(0);
    expect(Number(await page.locator('#token-view').getAttribute('data-kept'))).toBeLessThanOrEqual(16);
    await page.locator('#heatmap').click({ position: { x: 300, y: 200 } });
    await expect(page.locator('#token-view-title')).not.toHaveText('Tokens: layer 0, KV head 0');
    await page.screenshot({ path: testInfo.outputPath('demo-streaming.png'), fullPage: true });
  }

  const longest = await longestTask(page);
  testInfo.annotations.push({ type: 'longest main-thread task (ms)', description: longest.toFixed(0) });
  console.log(`longest main-thread long task: ${longest.toFixed(0)} ms`);
  expect(longest).toBeLessThanOrEqual(200);
});

// The bundled model (the default choice), asked about pasted documents: held-out Brown text with
// four "special magic number" facts in it, one asked for. The first document's seed and depth were
// fixed before this test was first run (no search for a passing sample), and on the model shipped
// in the eighteenth session it gets that one wrong (" 3226322" for 322632; the check was a substring
// test then, which passed it). So the test now asks five documents, seeds 9001-9005 fixed together
// with the bar before any of 9002-9005 was seen, and needs the whole right number (the evaluation
// harness's number-match scorer) in at least 3 of them: the model's rate on 50 such chat prompts is
// 74% (training/README.md), so 3 of 5 is a bar a working page and model clear and a broken one does not.
const DOC_SEEDS = [9001, 9002, 9003, 9004, 9005];
const DOC_BAR = 3;
test('the bundled model answers questions about pasted documents, streamed', async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  await page.goto('/');
  await expect(page.locator('#model-choice')).toHaveValue('bundled');
  await page.click('#load');
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await expect(page.locator('#model-status')).toContainText('4 layers');
  await page.evaluate(() => {
    const w = window as unknown as { answerTexts: string[] };
    w.answerTexts = [];
    new MutationObserver(() => {
      const b = document.querySelectorAll('.msg.assistant .body');
      const t = b[b.length - 1]?.textContent ?? '';
      if (t !== w.answerTexts.at(-1)) w.answerTexts.push(t);
    }).observe(document.getElementById('messages')!, { childList: true, characterData: true, subtree: true });
  });
  await page.fill('#max-tokens', '32');
  let right = 0;
  for (const [k, seed] of DOC_SEEDS.entries()) {
    const doc = niah(new Rng(seed), { targetChars: 2400, depth: 0.5, keys: 4, filler: corpusFiller('brown-heldout', brownDocuments('heldout').map((d) => d.sentences)) });
    const question = doc.messages[0]!.content;
    const value = String((doc.meta.values as string[])[doc.meta.target as number]);
    if (k > 0) {
      await page.click('#new-chat');
      await expect(page.locator('.msg.assistant')).toHaveCount(0);
    }
    await page.evaluate(() => { (window as unknown as { answerTexts: string[] }).answerTexts = []; });
    await page.fill('#prompt', question);
    await page.click('#send');
    await expect(page.locator('.msg.assistant .meta').last()).toContainText('finish:', { timeout: 180_000 });
    const answer = (await page.locator('.msg.assistant .body').last().textContent()) ?? '';
    const seen = await page.evaluate(() => (window as unknown as { answerTexts: string[] }).answerTexts);
    const ok = numberMatch(answer, value) === 1;
    if (ok) right++;
    testInfo.annotations.push({ type: `answer (seed ${seed})`, description: `${JSON.stringify(answer)} for ${value}: ${ok ? 'right' : 'wrong'}` });
    console.log(`seed ${seed}: asked for ${String((doc.meta.keys as string[])[doc.meta.target as number])} (${value}); answer: ${JSON.stringify(answer)} ${ok ? 'right' : 'WRONG'}`);
    await page.screenshot({ path: testInfo.outputPath(`demo-document-qa-${seed}.png`), fullPage: true });
    // streamed: the answer was seen growing through several partial texts before the full one
    expect(seen.filter((t) => t.length > 0 && t.length < answer.length).length).toBeGreaterThan(2);
  }
  console.log(`${right} of ${DOC_SEEDS.length} documents answered with the whole right number (bar ${DOC_BAR})`);
  expect(right).toBeGreaterThanOrEqual(DOC_BAR);
});

test('a bad model URL shows the error and the page stays usable', async ({ page }, testInfo) => {
  await page.goto('/');
  await loadModel(page, '/no/such/model/');
  // A static server answers 404 (bad-model-url); Vite's dev server answers its index.html instead (bad-config).
  await expect(page.locator('#model-status')).toContainText(/ModelLoadError \((bad-model-url|bad-config)\)/, { timeout: 60_000 });
  await expect(page.locator('#model-status')).toHaveClass(/error/);
  await expect(page.locator('#load')).toBeEnabled();
  await page.screenshot({ path: testInfo.outputPath('demo-bad-url.png'), fullPage: true });
  // The same page then loads a good model and answers.
  await loadModel(page, modelPath);
  await expect(page.locator('body')).toHaveAttribute('data-state', 'ready', { timeout: 120_000 });
  await page.fill('#max-tokens', '4');
  await page.fill('#prompt', 'Hello');
  await page.click('#send');
  await expect(page.locator('.msg.assistant .meta').last()).toContainText('finish:', { timeout: 120_000 });
});

test('a browser without WebGPU gets a clear message instead of the loader', async ({ baseURL }) => {
  // Without the SwiftShader flags there is no adapter here; an insecure origin has no navigator.gpu at all.
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...CHROMIUM_BASE_ARGS, '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    const insecure = 'http://kvscope.invalid';
    await page.route(`${insecure}/**`, async (route) => {
      const url = new URL(route.request().url());
      try {
        await route.fulfill({ response: await route.fetch({ url: `${baseURL}${url.pathname}${url.search}` }) });
      } catch {
        // the browser is closing (the test is over); the request no longer matters
      }
    });
    await page.goto(`${insecure}/`);
    await expect(page.locator('#webgpu-missing')).toBeVisible();
    await expect(page.locator('#webgpu-missing')).toContainText('does not expose WebGPU');
    await expect(page.locator('#load')).toBeDisabled();
    // The page may still be fetching modules (e.g. the catalogue worker's) through the route.
    await page.unrouteAll({ behavior: 'ignoreErrors' });
  } finally {
    await browser.close();
  }
});
