/**
 * The Cache Storage layer (src/model/cache-store.ts) in Node, against an in-memory fake of
 * the Cache API and a fake fetch that serves a model directory (Range requests, ETags,
 * connections that drop part way through, wrong sizes).
 */
import { describe, expect, it, vi } from 'vitest';
import { ModelLoadError } from '../../src/errors';
import {
  KVSCOPE_CACHE_NAME,
  type CacheLike,
  type CacheStorageLike,
  type ModelCacheOptions,
  checkFileContent,
  clearModelCache,
  isModelCached,
} from '../../src/model/cache-store';
import { toHfConfig, toMlcChatConfig } from '../../src/model/config';
import { UrlSource, openModelSource } from '../../src/model/source';
import { type WeightSet, sameTensorBytes } from '../../src/model/tensor';
import { loadModel } from '../../src/model/weights';
import { randomModel, writeMlcShards, writeSafetensors } from '../../src/model/writers';
import { TINY_QWEN, TINY_SMOL } from './fixtures';

// ------------------------------------------------------------------ fakes

interface Entry {
  body: Uint8Array | null;
  status: number;
  headers: [string, string][];
}

/** A Cache as the browser has it, in memory (keys are absolute URLs). */
class FakeCache implements CacheLike {
  readonly entries = new Map<string, Entry>();
  /** Simulates a full origin quota. */
  full = false;
  async match(url: string): Promise<Response | undefined> {
    const e = this.entries.get(url);
    return e ? new Response(e.body ? e.body.slice() : null, { status: e.status, headers: e.headers }) : undefined;
  }
  async put(url: string, response: Response): Promise<void> {
    if (response.status === 206) throw new TypeError('Cache.put: partial response');
    if (this.full) throw new DOMException('Quota exceeded', 'QuotaExceededError');
    const body = response.body ? new Uint8Array(await response.arrayBuffer()) : null;
    this.entries.set(url, { body, status: response.status, headers: [...response.headers] });
  }
  async delete(url: string): Promise<boolean> {
    return this.entries.delete(url);
  }
  async keys(): Promise<{ url: string }[]> {
    return [...this.entries.keys()].map((url) => ({ url }));
  }
  /** Stores a file the way WebLLM's `cache.add()` leaves a fetched response. */
  addFetched(url: string, body: Uint8Array): void {
    this.entries.set(url, { body: body.slice(), status: 200, headers: [['content-length', String(body.byteLength)], ['content-type', 'application/octet-stream']] });
  }
}

class FakeStorage implements CacheStorageLike {
  readonly caches = new Map<string, FakeCache>();
  opened: string[] = [];
  async open(name: string): Promise<FakeCache> {
    this.opened.push(name);
    let c = this.caches.get(name);
    if (!c) this.caches.set(name, (c = new FakeCache()));
    return c;
  }
  async has(name: string): Promise<boolean> {
    return this.caches.has(name);
  }
  async delete(name: string): Promise<boolean> {
    return this.caches.delete(name);
  }
  cache(name: string): FakeCache {
    const c = this.caches.get(name);
    if (!c) throw new Error(`no cache ${name}`);
    return c;
  }
}

interface Req {
  url: string;
  range: string | null;
  ifRange: string | null;
}

/** Serves `files` (absolute URL -> bytes) like a static file server. */
class FakeServer {
  readonly files = new Map<string, Uint8Array>();
  readonly requests: Req[] = [];
  /** Bytes sent (bodies), per URL. */
  readonly sent = new Map<string, number>();
  rangeSupport = true;
  version = 1;
  chunk = 512;
  /** Bytes of this response to deliver before the connection drops (undefined: all). */
  cut: (url: string, start: number, nth: number) => number | undefined = () => undefined;
  /** Content-Length to claim instead of the real one. */
  claimLength: (url: string) => number | undefined = () => undefined;

  etag(url: string): string {
    return `"v${this.version}-${this.files.get(url)?.byteLength ?? 0}"`;
  }

  fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    const req: Req = { url, range: headers.get('range'), ifRange: headers.get('if-range') };
    this.requests.push(req);
    const nth = this.requests.filter((r) => r.url === url).length;
    const file = this.files.get(url);
    if (!file) return new Response('not found', { status: 404, headers: { 'content-type': 'text/plain' } });
    let start = 0;
    let status = 200;
    const out: Record<string, string> = { 'content-type': 'application/octet-stream', etag: this.etag(url) };
    const m = req.range ? /^bytes=(\d+)-$/.exec(req.range) : null;
    if (m && this.rangeSupport && (!req.ifRange || req.ifRange === this.etag(url))) {
      start = Number(m[1]);
      if (start >= file.byteLength) return new Response(null, { status: 416, headers: { 'content-range': `bytes */${file.byteLength}` } });
      status = 206;
      out['content-range'] = `bytes ${start}-${file.byteLength - 1}/${file.byteLength}`;
    }
    const body = file.subarray(start);
    out['content-length'] = String(this.claimLength(url) ?? body.byteLength);
    const limit = this.cut(url, start, nth);
    let at = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull: (controller) => {
        if (limit !== undefined && at >= limit) {
          controller.error(new TypeError('network error: connection reset'));
          return;
        }
        if (at >= body.byteLength) {
          controller.close();
          return;
        }
        const end = Math.min(body.byteLength, at + this.chunk, limit ?? Infinity);
        controller.enqueue(body.slice(at, end));
        this.sent.set(url, (this.sent.get(url) ?? 0) + (end - at));
        at = end;
      },
    });
    return new Response(stream, { status, headers: out });
  };

  /** Requests for `name` (a file name under any base). */
  requestsFor(name: string): Req[] {
    return this.requests.filter((r) => r.url.endsWith(`/${name}`));
  }
}

// ------------------------------------------------------------------ fixtures

const BASE = 'https://models.example/mlc-ai/Tiny-q0f16-MLC/resolve/main/';
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** An MLC directory (f16, several shards, no tokenizer) as files by name. */
function mlcFiles(shardBytes = 12_000): { files: Map<string, Uint8Array>; weights: WeightSet; shards: string[] } {
  const weights = randomModel(TINY_SMOL, 'f16', 5);
  const { tensorCache, shards } = writeMlcShards(weights, { config: TINY_SMOL, shardBytes });
  const files = new Map<string, Uint8Array>([
    ['mlc-chat-config.json', json(toMlcChatConfig({ ...TINY_SMOL, torchDtype: 'f16' }))],
    ['tensor-cache.json', json(tensorCache)],
    ...shards,
  ]);
  return { files, weights, shards: [...shards.keys()] };
}

function serve(files: Map<string, Uint8Array>, base = BASE): FakeServer {
  const s = new FakeServer();
  for (const [name, bytes] of files) s.files.set(base + name, bytes);
  return s;
}

function opts(storage: FakeStorage, server: FakeServer, extra: ModelCacheOptions = {}): { cache: ModelCacheOptions } {
  return { cache: { storage, fetch: server.fetch, retryDelayMs: 0, ...extra } };
}

function expectSameWeights(a: WeightSet, b: WeightSet): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [name, t] of a) if (!sameTensorBytes(t, b.get(name)!)) throw new Error(`bytes of ${name} differ`);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const bytesOf = (files: Map<string, Uint8Array>) => [...files.values()].reduce((a, b) => a + b.byteLength, 0);

// ------------------------------------------------------------------ tests

describe('Cache Storage for model URLs', () => {
  it('loads a model WebLLM cached on this origin from its caches, without fetching those files', async () => {
    const { files, weights, shards } = mlcFiles();
    expect(shards.length).toBeGreaterThan(2);
    const storage = new FakeStorage();
    const config = await storage.open('webllm/config');
    const model = await storage.open('webllm/model');
    for (const [name, bytes] of files) (name === 'mlc-chat-config.json' ? config : model).addFetched(BASE + name, bytes);
    storage.opened = [];
    const server = serve(files);
    const progress: [number, number][] = [];
    const loaded = await loadModel(BASE, { ...opts(storage, server), onProgress: (l, t) => progress.push([l, t]) });
    expect(loaded.layout).toBe('mlc');
    expectSameWeights(weights, loaded.weights);
    // Only the optional files WebLLM does not keep (the tokenizer files this model lacks) went to the network.
    expect(server.requests.map((r) => r.url.slice(BASE.length)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    // WebLLM's files are not copied into kvscope's cache.
    const own = storage.cache(KVSCOPE_CACHE_NAME);
    for (const name of files.keys()) expect(own.entries.has(BASE + name)).toBe(false);
    const weightBytes = shards.reduce((n, s) => n + files.get(s)!.byteLength, 0);
    expect(progress.at(-1)).toEqual([weightBytes, weightBytes]);
  });

  it('does not create WebLLM caches that do not exist', async () => {
    const { files } = mlcFiles();
    const storage = new FakeStorage();
    await loadModel(BASE, opts(storage, serve(files)));
    expect([...storage.caches.keys()]).toEqual([KVSCOPE_CACHE_NAME]);
  });

  it('stores each file in its own cache after a complete download, and the next load makes no requests at all', async () => {
    const { files, weights } = mlcFiles();
    const storage = new FakeStorage();
    const server = serve(files);
    expectSameWeights(weights, (await loadModel(BASE, opts(storage, server))).weights);
    expect(server.requests.length).toBe(files.size + 2); // + the two missing tokenizer files (404)
    const own = storage.cache(KVSCOPE_CACHE_NAME);
    for (const [name, bytes] of files) {
      const e = own.entries.get(BASE + name)!;
      expect(e.body).toEqual(bytes);
      expect(new Headers(e.headers).get('x-kvscope-bytes')).toBe(String(bytes.byteLength));
      expect(new Headers(e.headers).get('x-kvscope-sha256')).toMatch(/^[0-9a-f]{64}$/);
    }
    // The 404s were recorded once the load succeeded.
    expect(new Headers(own.entries.get(`${BASE}tokenizer.json`)!.headers).get('x-kvscope-missing')).toBe('1');

    server.requests.length = 0;
    const progress: [number, number][] = [];
    const again = await loadModel(BASE, { ...opts(storage, server), onProgress: (l, t) => progress.push([l, t]) });
    expect(server.requests).toEqual([]);
    expectSameWeights(weights, again.weights);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)![0]).toBe(progress.at(-1)![1]);
  });

  it('a failed load leaves no "missing file" marks (a mistyped URL must not stick)', async () => {
    const storage = new FakeStorage();
    const server = new FakeServer();
    const e = await rejection(loadModel(BASE, opts(storage, server)));
    expect(e).toMatchObject({ code: 'bad-model-url' });
    expect(storage.caches.get(KVSCOPE_CACHE_NAME)?.entries.size ?? 0).toBe(0);
  });

  it('continues a download that broke off with a Range request, without fetching the received bytes again', async () => {
    const { files, weights, shards } = mlcFiles(40_000);
    const shard = BASE + shards[0]!;
    const size = files.get(shards[0]!)!.byteLength;
    const storage = new FakeStorage();
    const server = serve(files);
    const half = Math.floor(size / 2);
    server.cut = (url, _start, nth) => (url === shard && nth === 1 ? half : undefined);
    expectSameWeights(weights, (await loadModel(BASE, opts(storage, server))).weights);
    const reqs = server.requestsFor(shards[0]!);
    expect(reqs.length).toBe(2);
    expect(reqs[0]!.range).toBeNull();
    expect(reqs[1]!.range).toBe(`bytes=${half}-`);
    expect(reqs[1]!.ifRange).toBe(server.etag(shard));
    expect(server.sent.get(shard)).toBe(size);
  });

  it('restarts the file when the server ignores Range (200 instead of 206)', async () => {
    const { files, weights, shards } = mlcFiles(40_000);
    const shard = BASE + shards[0]!;
    const size = files.get(shards[0]!)!.byteLength;
    const server = serve(files);
    server.rangeSupport = false;
    server.cut = (url, _start, nth) => (url === shard && nth === 1 ? 1000 : undefined);
    expectSameWeights(weights, (await loadModel(BASE, opts(new FakeStorage(), server))).weights);
    expect(server.requestsFor(shards[0]!).length).toBe(2);
    expect(server.sent.get(shard)).toBe(1000 + size);
  });

  it('after an interrupted load, the next one fetches only what is missing: finished shards not at all, a large one from its last checkpoint', async () => {
    const { files, weights, shards } = mlcFiles(20_000);
    expect(shards.length).toBeGreaterThanOrEqual(3);
    const big = shards[1]!;
    const size = files.get(big)!.byteLength;
    const partBytes = 2048;
    expect(size).toBeGreaterThan(4 * partBytes);
    const storage = new FakeStorage();
    const server = serve(files);
    const cutAt = 3 * partBytes + 1000;
    // The connection always drops at byte cutAt of the file (so the in-load retry fails too).
    server.cut = (url, start) => (url === BASE + big ? Math.max(0, cutAt - start) : undefined);
    const e = await rejection(loadModel(BASE, opts(storage, server, { retries: 1, partBytes })));
    expect(e).toBeInstanceOf(ModelLoadError);
    expect((e as ModelLoadError).code).toBe('bad-model-url');
    expect((e as Error).message).toContain(BASE + big);
    expect((e as Error).message).toMatch(/3 checkpointed part\(s\) are kept/);
    const own = storage.cache(KVSCOPE_CACHE_NAME);
    // The other shards finish in the background of the failed load and are stored.
    const others = shards.filter((s) => s !== big);
    await vi.waitFor(() => expect(others.every((s) => own.entries.has(BASE + s))).toBe(true));
    expect(own.entries.has(BASE + big)).toBe(false);

    server.cut = () => undefined;
    server.requests.length = 0;
    server.sent.clear();
    expectSameWeights(weights, (await loadModel(BASE, opts(storage, server, { partBytes }))).weights);
    for (const s of others) expect(server.requestsFor(s)).toEqual([]);
    expect(server.requestsFor(big)).toEqual([{ url: BASE + big, range: `bytes=${3 * partBytes}-`, ifRange: server.etag(BASE + big) }]);
    expect(server.sent.get(BASE + big)).toBe(size - 3 * partBytes);
    // The whole file is stored and its parts are gone.
    expect(own.entries.get(BASE + big)!.body).toEqual(files.get(big));
    expect([...own.entries.keys()].filter((k) => k.includes('kvscope-part'))).toEqual([]);
  });

  it('starts a checkpointed file over when it changed on the server (If-Range fails)', async () => {
    const { files, weights, shards } = mlcFiles(20_000);
    const big = BASE + shards[1]!;
    const partBytes = 4096;
    const storage = new FakeStorage();
    const server = serve(files);
    server.cut = (url) => (url === big ? 2 * partBytes + 10 : undefined);
    await rejection(loadModel(BASE, opts(storage, server, { retries: 0, partBytes })));
    server.cut = () => undefined;
    server.version = 2; // new ETag, same bytes
    server.sent.clear();
    expectSameWeights(weights, (await loadModel(BASE, opts(storage, server, { partBytes }))).weights);
    expect(server.sent.get(big)).toBe(files.get(shards[1]!)!.byteLength);
  });

  it('detects a corrupt entry in its own cache (bit flip, truncation), deletes it and fetches the file again', async () => {
    const { files, weights, shards } = mlcFiles();
    const storage = new FakeStorage();
    const server = serve(files);
    await loadModel(BASE, opts(storage, server));
    const own = storage.cache(KVSCOPE_CACHE_NAME);
    const flipped = own.entries.get(BASE + shards[0]!)!;
    flipped.body![100] ^= 0xff; // same length: only the SHA-256 catches it
    const truncated = own.entries.get(BASE + shards[1]!)!;
    truncated.body = truncated.body!.slice(0, truncated.body!.byteLength - 8);
    const json = own.entries.get(`${BASE}tensor-cache.json`)!;
    json.body = json.body!.slice(0, 20);
    json.headers = json.headers.map(([k, v]) => [k, k === 'x-kvscope-bytes' ? '20' : v]);
    server.requests.length = 0;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      expectSameWeights(weights, (await loadModel(BASE, opts(storage, server))).weights);
      expect(warn).toHaveBeenCalledTimes(3);
      expect(warn.mock.calls.map((c) => String(c[0])).join('\n')).toMatch(/SHA-256/);
    } finally {
      warn.mockRestore();
    }
    expect(server.requests.map((r) => r.url.slice(BASE.length)).sort()).toEqual([shards[0]!, shards[1]!, 'tensor-cache.json'].sort());
    expect(own.entries.get(BASE + shards[0]!)!.body).toEqual(files.get(shards[0]!));
    expect(own.entries.get(BASE + shards[1]!)!.body).toEqual(files.get(shards[1]!));
  });

  it('a truncated shard in WebLLM\'s cache is deleted there and fetched instead', async () => {
    const { files, weights, shards } = mlcFiles();
    const storage = new FakeStorage();
    const webllm = await storage.open('webllm/model');
    for (const [name, bytes] of files) webllm.addFetched(BASE + name, bytes);
    // Shorter than tensor-cache.json's nbytes, with a Content-Length that agrees with the body.
    webllm.addFetched(BASE + shards[0]!, files.get(shards[0]!)!.slice(0, 1000));
    const server = serve(files);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      expectSameWeights(weights, (await loadModel(BASE, opts(storage, server))).weights);
    } finally {
      warn.mockRestore();
    }
    expect(server.requestsFor(shards[0]!).length).toBe(1);
    expect(server.requestsFor(shards[1]!).length).toBe(0);
    expect(webllm.entries.has(BASE + shards[0]!)).toBe(false);
    expect(storage.cache(KVSCOPE_CACHE_NAME).entries.get(BASE + shards[0]!)!.body).toEqual(files.get(shards[0]!));
  });

  it('a download whose size contradicts tensor-cache.json or Content-Length is a typed error naming the file, and is not cached', async () => {
    const { files, shards } = mlcFiles();
    const shard = BASE + shards[1]!;
    // A server whose file is shorter than the index says.
    const short = new Map(files);
    short.set(shards[1]!, files.get(shards[1]!)!.slice(0, 5000));
    const storage = new FakeStorage();
    const e = await rejection(loadModel(BASE, opts(storage, serve(short))));
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e).toMatchObject({ code: 'integrity-failed' });
    expect((e as Error).message).toContain(shard);
    expect((e as Error).message).toMatch(/5000 bytes, but tensor-cache\.json says \d+/);
    await new Promise((r) => setTimeout(r, 20));
    expect(storage.cache(KVSCOPE_CACHE_NAME).entries.has(shard)).toBe(false);

    // A body that ends before its Content-Length (no index size for config files).
    const server = serve(files);
    server.claimLength = (url) => (url === `${BASE}mlc-chat-config.json` ? files.get('mlc-chat-config.json')!.byteLength + 7 : undefined);
    const e2 = await rejection(loadModel(BASE, opts(new FakeStorage(), server)));
    expect(e2).toMatchObject({ code: 'integrity-failed' });
    expect((e2 as Error).message).toContain(`${BASE}mlc-chat-config.json`);
    expect((e2 as Error).message).toMatch(/Content-Length/);
  });

  it('checks a safetensors file against its own header', async () => {
    const weights = randomModel(TINY_QWEN, 'f32', 3);
    const st = writeSafetensors(weights.values());
    expect(checkFileContent('model.safetensors', st)).toBeUndefined();
    expect(checkFileContent('model.safetensors', st.slice(0, st.byteLength - 4))).toMatch(/header implies/);
    expect(checkFileContent('config.json', json({ a: 1 }).slice(0, 5))).toMatch(/not valid JSON/);
    const files = new Map<string, Uint8Array>([
      ['config.json', json(toHfConfig({ ...TINY_QWEN, torchDtype: 'f32' }))],
      ['model.safetensors', st.slice(0, st.byteLength - 4)],
    ]);
    const e = await rejection(loadModel(BASE, opts(new FakeStorage(), serve(files))));
    expect(e).toMatchObject({ code: 'integrity-failed' });
    expect((e as Error).message).toContain(`${BASE}model.safetensors`);
    files.set('model.safetensors', st);
    expectSameWeights(weights, (await loadModel(BASE, opts(new FakeStorage(), serve(files)))).weights);
  });

  it('cache: false reads and writes no cache (not even WebLLM\'s), and downloads are still checked', async () => {
    const { files, weights } = mlcFiles();
    const storage = new FakeStorage();
    const webllm = await storage.open('webllm/model');
    for (const [name, bytes] of files) webllm.addFetched(BASE + name, bytes);
    storage.opened = [];
    const server = serve(files);
    for (let i = 0; i < 2; i++) expectSameWeights(weights, (await loadModel(BASE, opts(storage, server, { enabled: false }))).weights);
    expect(storage.opened).toEqual([]);
    expect(storage.caches.has(KVSCOPE_CACHE_NAME)).toBe(false);
    expect(server.requests.length).toBe(2 * (files.size + 2));
    const short = new Map(files);
    const name = [...files.keys()].find((n) => n.endsWith('.bin'))!;
    short.set(name, files.get(name)!.slice(1));
    expect(await rejection(loadModel(BASE, opts(storage, serve(short), { enabled: false })))).toMatchObject({ code: 'integrity-failed' });
  });

  it('Node without Cache Storage keeps plain fetch; cache: false opens no cache layer', () => {
    expect((globalThis as { caches?: unknown }).caches).toBeUndefined();
    const plain = openModelSource(BASE, { cache: true });
    expect(plain).toBeInstanceOf(UrlSource);
    expect((plain as UrlSource).cache).toBeUndefined();
    // Without a cache option (callers other than loadModel) there is no cache layer even with a storage around.
    expect((openModelSource(BASE) as UrlSource).cache).toBeUndefined();
    expect((openModelSource(BASE, { cache: false }) as UrlSource).cache).toBeUndefined();
    const withStorage = openModelSource(BASE, { cache: { storage: new FakeStorage() } }) as UrlSource;
    expect(withStorage.cache?.storage).toBeInstanceOf(FakeStorage);
  });

  it('clearModelCache clears everything, or one model directory', async () => {
    const { files } = mlcFiles();
    const other = 'https://models.example/other/';
    const storage = new FakeStorage();
    await loadModel(BASE, opts(storage, serve(files)));
    await loadModel(other, opts(storage, serve(files, other)));
    const own = storage.cache(KVSCOPE_CACHE_NAME);
    const perModel = own.entries.size / 2;
    expect(await clearModelCache(BASE, storage)).toBe(perModel);
    expect([...own.entries.keys()].every((k) => k.startsWith(other))).toBe(true);
    expect(await clearModelCache(undefined, storage)).toBe(1);
    expect(storage.caches.has(KVSCOPE_CACHE_NAME)).toBe(false);
    expect(await clearModelCache(undefined, storage)).toBe(0);
    expect(await clearModelCache()).toBe(0); // Node: no Cache Storage
  });

  it('isModelCached: every file of an MLC directory, from WebLLM\'s caches and/or its own', async () => {
    const { files, shards } = mlcFiles();
    const storage = new FakeStorage();
    expect(await isModelCached(BASE, storage)).toBe(false);
    const webllm = await storage.open('webllm/model');
    for (const [name, bytes] of files) if (name !== shards[0]) webllm.addFetched(BASE + name, bytes);
    expect(await isModelCached(BASE, storage)).toBe(false); // one shard missing
    (await storage.open(KVSCOPE_CACHE_NAME)).addFetched(BASE + shards[0]!, files.get(shards[0]!)!);
    expect(await isModelCached(BASE, storage)).toBe(true);
    expect(await isModelCached('https://models.example/other/', storage)).toBe(false);
    expect(await isModelCached(BASE)).toBe(false); // Node: no Cache Storage
  });

  it('a full Cache Storage (put fails) warns once and the load still succeeds', async () => {
    const { files, weights, shards } = mlcFiles(20_000);
    const storage = new FakeStorage();
    (await storage.open(KVSCOPE_CACHE_NAME)).full = true;
    const server = serve(files);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      expectSameWeights(weights, (await loadModel(BASE, opts(storage, server, { partBytes: 2048 }))).weights);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]![0])).toMatch(/could not store .*Quota exceeded/);
    } finally {
      warn.mockRestore();
    }
    expect(storage.cache(KVSCOPE_CACHE_NAME).entries.size).toBe(0);
    expect(server.requestsFor(shards[1]!).length).toBe(1);
  });

  it('a fetch that fails outright is retried, then reported with the URL', async () => {
    const { files, weights } = mlcFiles();
    const server = serve(files);
    let failures = 1;
    const flaky = (url: string, init?: RequestInit) => (failures-- > 0 ? Promise.reject(new TypeError('Failed to fetch')) : server.fetch(url, init));
    expectSameWeights(weights, (await loadModel(BASE, { cache: { storage: new FakeStorage(), fetch: flaky, retryDelayMs: 0 } })).weights);
    const dead = () => Promise.reject(new TypeError('Failed to fetch'));
    const e = await rejection(loadModel(BASE, { cache: { storage: new FakeStorage(), fetch: dead, retryDelayMs: 0, retries: 2 } }));
    expect(e).toMatchObject({ code: 'bad-model-url' });
    expect((e as Error).message).toContain(`${BASE}mlc-chat-config.json`);
    expect((e as Error).message).toMatch(/2 retries/);
  });

  it('progress counts cached and downloaded bytes of a resumed load', async () => {
    const { files, shards } = mlcFiles(20_000);
    const storage = new FakeStorage();
    const server = serve(files);
    server.cut = (url) => (url === BASE + shards[1]! ? 9000 : undefined);
    await rejection(loadModel(BASE, opts(storage, server, { retries: 0, partBytes: 4096 })));
    server.cut = () => undefined;
    await vi.waitFor(() => expect(storage.cache(KVSCOPE_CACHE_NAME).entries.has(BASE + shards[0]!)).toBe(true));
    server.sent.clear();
    const events: [number, number][] = [];
    await loadModel(BASE, { ...opts(storage, server, { partBytes: 4096 }), onProgress: (l, t) => events.push([l, t]) });
    const weightBytes = bytesOf(files) - files.get('mlc-chat-config.json')!.byteLength - files.get('tensor-cache.json')!.byteLength;
    expect(events.at(-1)).toEqual([weightBytes, weightBytes]);
    for (let i = 1; i < events.length; i++) expect(events[i]![1]).toBe(weightBytes); // totals known up front from tensor-cache.json
    // Only shard 1 from its second checkpoint (8192) on went over the network again.
    expect(sum(server.sent)).toBe(files.get(shards[1]!)!.byteLength - 8192);
  });
});
