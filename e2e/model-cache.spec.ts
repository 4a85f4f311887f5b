import { expect, test } from '@playwright/test';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomQ4Model, writeModelDir } from '../src/model/writers';
import { loaded, qwenLike } from '../test/engine/fixtures';
import { FIXTURES_DIR, chatmlConvTemplate } from './pages/fixture-model';

// Cache Storage in a real browser (src/model/cache-store.ts): a q4f16_1 MLC model in several
// shards, served only through the route below (under a path the dev server does not have, so
// a load that is not answered from the cache cannot succeed behind the counter's back).
// The first load downloads each file once and stores it in "kvscope/model"; a second load on
// the same origin, in the page and then in the engine's Web Worker, makes no requests; and
// files WebLLM stored in its own caches (the way its ArtifactCache does: cache.add(url) into
// "webllm/config" / "webllm/model") load without the network.
const REL = 'cache/Qwen2.5-0.5B-Instruct-q4f16_1-MLC';
const PREFIX = '/kvscope-cache-e2e/';
const config = { ...qwenLike, contextLength: 256 };
const model = loaded(config, randomQ4Model(config, 'q4f16_1', 7, { std: 0.08 }), true);

test.beforeAll(async () => {
  const eos = model.config.eosTokenIds[0]!;
  await writeModelDir(
    join(FIXTURES_DIR, REL),
    model.config,
    model.weights,
    'mlc',
    {
      tokenizerJson: model.tokenizerJson!,
      tokenizerConfig: model.tokenizerConfig!,
      mlcConvTemplate: chatmlConvTemplate('chatml', eos),
    },
    { maxShardBytes: 48_000 },
  );
});

const requests: string[] = [];
/** While true the route answers like a dropped connection (Playwright's setOffline does not stop routed requests). */
let networkDown = false;

test.beforeEach(async ({ context }) => {
  requests.length = 0;
  // /kvscope-cache-e2e/<copy>/<file> -> e2e/fixtures/<REL>/<file>; <copy> lets one test use two model URLs.
  await context.route(`**${PREFIX}**`, async (route) => {
    const path = decodeURIComponent(new URL(route.request().url()).pathname);
    requests.push(path);
    if (networkDown) return route.abort('internetdisconnected');
    const name = path.slice(PREFIX.length).split('/').slice(1).join('/');
    const file = join(FIXTURES_DIR, REL, name);
    if (name.includes('..') || !existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
    const body = readFileSync(file);
    await route.fulfill({ status: 200, body, headers: { 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream', 'content-length': String(body.length) } });
  });
});

const shardsOf = (paths: string[]) => paths.filter((p) => p.endsWith('.bin'));

test('a second load on the same origin makes no network requests for the model files (page and worker)', async ({ page, baseURL }) => {
  await page.goto('/e2e/pages/gpu.html');
  const url = `${baseURL}${PREFIX}own/`;
  const load = (u: string) =>
    page.evaluate(async (u) => {
      const weightsPath = '/src/model/weights.ts';
      const { loadModel } = await import(/* @vite-ignore */ weightsPath);
      const m = await loadModel(u);
      // A checksum of every weight byte, to compare the two loads.
      let sum = 0;
      let bytes = 0;
      for (const t of m.weights.values()) {
        for (const part of [t.data as Uint8Array, (t.q4?.scales as Uint8Array | undefined) ?? new Uint8Array(0)]) {
          bytes += part.byteLength;
          for (let i = 0; i < part.byteLength; i += 7) sum = (sum * 31 + part[i]!) % 1_000_000_007;
        }
      }
      return { sum, bytes, tensors: m.weights.size as number };
    }, u);

  const first = await load(url);
  const shards = shardsOf(requests);
  expect(shards.length).toBeGreaterThan(2);
  expect(new Set(shards).size).toBe(shards.length); // each shard fetched once
  expect(requests.length).toBe(4 + shards.length); // mlc-chat-config, tokenizer, tokenizer_config, tensor-cache + shards
  const cached = await page.evaluate(async () => {
    const c = await caches.open('kvscope/model');
    return (await c.keys()).map((r) => new URL(r.url).pathname);
  });
  expect(cached.sort()).toEqual([...requests].sort());

  requests.length = 0;
  const second = await load(url);
  expect(second).toEqual(first);
  expect(requests).toEqual([]);

  // The engine in its Web Worker (same origin, same Cache Storage): loads and answers, no requests.
  const reply = await page.evaluate(async (u) => {
    const apiPath = '/src/api/index.ts';
    const { createEngine } = await import(/* @vite-ignore */ apiPath);
    const engine = await createEngine({ model: u, contextLength: 64, prefillChunk: 16 });
    const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    await engine.unload();
    return r.usage.completion_tokens as number;
  }, url);
  expect(reply).toBeGreaterThan(0);
  expect(requests).toEqual([]);

  // cache: false downloads again.
  await page.evaluate(async (u) => {
    const weightsPath = '/src/model/weights.ts';
    const { loadModel } = await import(/* @vite-ignore */ weightsPath);
    await loadModel(u, { cache: false });
  }, url);
  expect(shardsOf(requests).sort()).toEqual([...shards].sort());
});

test("files WebLLM stored in its caches (webllm/config, webllm/model) load without the network", async ({ page, baseURL }) => {
  await page.goto('/e2e/pages/gpu.html');
  const url = `${baseURL}${PREFIX}webllm/`;
  // What WebLLM's ArtifactCache.addToCache does for each file it loads.
  await page.evaluate(async (u) => {
    const tc = await (await fetch(new URL('tensor-cache.json', u))).json();
    const config = await caches.open('webllm/config');
    await config.add(new Request(new URL('mlc-chat-config.json', u).href));
    const modelCache = await caches.open('webllm/model');
    for (const f of ['tokenizer.json', 'tensor-cache.json', ...tc.records.map((r: { dataPath: string }) => r.dataPath)]) {
      await modelCache.add(new Request(new URL(f, u).href));
    }
  }, url);
  const fetchedByWebLLM = requests.length;
  expect(shardsOf(requests).length).toBeGreaterThan(2);

  requests.length = 0;
  const result = await page.evaluate(async (u) => {
    const weightsPath = '/src/model/weights.ts';
    const { loadModel } = await import(/* @vite-ignore */ weightsPath);
    const m = await loadModel(u);
    const own = await caches.open('kvscope/model');
    return { tensors: m.weights.size as number, ownKeys: (await own.keys()).map((r) => new URL(r.url).pathname) };
  }, url);
  expect(result.tensors).toBeGreaterThan(0);
  // Only tokenizer_config.json, which WebLLM does not keep, came from the network (and went to kvscope's cache).
  expect(requests).toEqual([`${PREFIX}webllm/tokenizer_config.json`]);
  expect(result.ownKeys).toEqual([`${PREFIX}webllm/tokenizer_config.json`]);
  expect(fetchedByWebLLM).toBeGreaterThan(3);

  // Offline: a model whose files only WebLLM cached (a second copy URL, so kvscope's own cache
  // holds nothing of it) still loads: tokenizer_config.json is optional in the MLC layout.
  const url2 = `${baseURL}${PREFIX}webllm2/`;
  await page.evaluate(async (u) => {
    const tc = await (await fetch(new URL('tensor-cache.json', u))).json();
    await (await caches.open('webllm/config')).add(new Request(new URL('mlc-chat-config.json', u).href));
    const modelCache = await caches.open('webllm/model');
    for (const f of ['tokenizer.json', 'tensor-cache.json', ...tc.records.map((r: { dataPath: string }) => r.dataPath)]) {
      await modelCache.add(new Request(new URL(f, u).href));
    }
  }, url2);
  requests.length = 0;
  networkDown = true;
  try {
    const offline = await page.evaluate(async (u) => {
      const weightsPath = '/src/model/weights.ts';
      const { loadModel } = await import(/* @vite-ignore */ weightsPath);
      const m = await loadModel(u);
      return { tensors: m.weights.size as number, tokenizer: !!m.tokenizerJson, tokenizerConfig: m.tokenizerConfig !== undefined };
    }, url2);
    expect(offline.tensors).toBe(result.tensors);
    expect(offline.tokenizer).toBe(true);
    expect(offline.tokenizerConfig).toBe(false);
    // The only network attempts (the cache layer retries) were the optional tokenizer_config.json, and they failed.
    expect(requests.length).toBeGreaterThan(0);
    expect(new Set(requests)).toEqual(new Set([`${PREFIX}webllm2/tokenizer_config.json`]));
  } finally {
    networkDown = false;
  }
});
