import { expect, test } from '@playwright/test';
import { join } from 'node:path';
import { ReferenceModel } from '../src/reference/forward';
import { toFloat32 } from '../src/model/tensor';
import { randomQ4Model, writeModelDir } from '../src/model/writers';
import { loaded, qwenLike } from '../test/engine/fixtures';
import { FIXTURES_DIR, serveFixturesStatically, chatmlConvTemplate } from './pages/fixture-model';

// A catalogue-style id (WebLLM's name for the real model) served from localhost: a random
// Qwen2-shaped q4f16_1 MLC build (q_weight / q_scale records, fused c_attn / gate_up_proj),
// resolved through src/model/catalog.ts, loaded and chatted with in Chromium on WebGPU.
const ID = 'Qwen2.5-0.5B-Instruct-q4f16_1-MLC';
const REL = `catalog/mlc-ai/${ID}`;
const config = { ...qwenLike, contextLength: 256 };
const model = loaded(config, randomQ4Model(config, 'q4f16_1', 31, { std: 0.08, normJitter: 0.2, biasStd: 0.05 }), true);

test.beforeAll(async () => {
  const dir = join(FIXTURES_DIR, REL);
  const eos = model.config.eosTokenIds[0]!;
  await writeModelDir(dir, model.config, model.weights, 'mlc', {
    tokenizerJson: model.tokenizerJson!,
    tokenizerConfig: model.tokenizerConfig!,
    mlcConvTemplate: chatmlConvTemplate('qwen2', eos),
  });
});

test.beforeEach(async ({ context }) => {
  await serveFixturesStatically(context);
});

test('a catalogue id resolves to a localhost q4f16_1 MLC directory that loads, chats, and decodes greedily like the reference', async ({ page, baseURL }) => {
  const prompt = [5, 17, 42, 99, 103, 7];
  await page.goto('/e2e/pages/gpu.html');
  const result = await page.evaluate(
    async ({ id, modelUrl, prompt }) => {
      // Module paths as the dev server serves them (variables keep the spec's TypeScript from resolving them).
      const catalogPath = '/src/model/catalog.ts';
      const enginePath = '/src/engine/engine.ts';
      const cat = await import(/* @vite-ignore */ catalogPath);
      const { Engine } = await import(/* @vite-ignore */ enginePath);
      const catalog = { model_list: [{ model: modelUrl, model_id: id, vram_required_MB: 944.62, low_resource_required: true, overrides: { context_window_size: 256 } }] };
      const entry = cat.resolveCatalogModel(id, catalog);
      const engine = await Engine.load({ model: entry.weightUrl, contextLength: 128, prefillChunk: 16 });
      const chat = await engine.generateText({ messages: [{ role: 'user', content: 'Hello there, which number?' }] }, { maxTokens: 6 });
      const greedy = await engine.generateText(prompt, { maxTokens: 8 });
      return { entry, chatIds: chat.ids as number[], chatText: chat.text as string, greedyIds: greedy.ids as number[] };
    },
    { id: ID, modelUrl: `${baseURL}/e2e/fixtures/${REL}`, prompt },
  );
  expect(result.entry).toMatchObject({ id: ID, architecture: 'qwen2', quantization: 'q4f16_1', weightUrl: `${baseURL}/e2e/fixtures/${REL}/` });
  expect(result.chatIds.length).toBeGreaterThan(0);
  expect(typeof result.chatText).toBe('string');

  // Greedy continuation of a raw-id prompt = the plain-TS reference on the dequantized weights.
  const ref = new ReferenceModel(model.config, new Map([...model.weights].map(([k, t]) => [k, toFloat32(t)])), 64);
  const all = ref.forwardAll(prompt);
  const want: number[] = [];
  const argmax = (a: Float32Array) => a.reduce((b, v, i) => (v > a[b]! ? i : b), 0);
  let cur = argmax(all[all.length - 1]!);
  let pos = prompt.length;
  while (want.length < 8 && !model.config.eosTokenIds.includes(cur)) {
    want.push(cur);
    cur = argmax(ref.forward(cur, pos++));
  }
  expect(want.length).toBeGreaterThan(0);
  expect(result.greedyIds).toEqual(want);
});

test("the demo's model picker lists WebLLM's catalogue with size and VRAM, and refuses unsupported ids with the architecture named", async ({ page }) => {
  await page.goto('/');
  const choice = page.locator('#model-choice');
  await expect(choice).toHaveAttribute('data-catalog', /^[1-9]\d*$/, { timeout: 120_000 });
  const qwen = choice.locator('option[value="webllm:Qwen2.5-0.5B-Instruct-q4f16_1-MLC"]');
  await expect(qwen).toHaveText('Qwen2.5-0.5B-Instruct-q4f16_1-MLC (0.5B params, VRAM ≈ 945 MB)');
  await expect(qwen.locator('xpath=..')).toHaveAttribute('label', /runs in kvscope/);
  await choice.selectOption('webllm:Qwen2.5-0.5B-Instruct-q4f16_1-MLC');
  await expect(page.locator('#model-choice-note')).toContainText('https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/');
  await expect(page.locator('#model-url-row')).toBeHidden();

  const phi = choice.locator('option[value="webllm:Phi-3.5-mini-instruct-q4f16_1-MLC"]');
  await expect(phi).toContainText('not supported');
  await expect(phi.locator('xpath=..')).toHaveAttribute('label', /not supported/);
  await choice.selectOption('webllm:Phi-3.5-mini-instruct-q4f16_1-MLC');
  await expect(page.locator('#model-choice-note')).toHaveText(/phi3 architecture \(Phi\); kvscope supports Llama 3\.x/);
  await page.click('#load');
  await expect(page.locator('#model-status')).toHaveText(/Model "Phi-3\.5-mini-instruct-q4f16_1-MLC" uses the phi3 architecture/);
  await expect(page.locator('#model-status')).toHaveClass(/error/);
});
