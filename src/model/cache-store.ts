/**
 * Model files in the browser's Cache Storage: reuse what WebLLM already downloaded on this
 * origin, otherwise keep kvscope's own copy, with download progress, resume and integrity
 * checks. Used by `UrlSource` (source.ts) wherever `caches` exists (pages and workers in a
 * secure context); Node has no `caches`, and its URL loading is unchanged.
 *
 * Where a file is looked for, in order:
 * 1. WebLLM's caches. WebLLM (`@mlc-ai/web-llm` 0.2.86, read in
 *    node_modules/@mlc-ai/web-llm/lib/index.js: `ArtifactCache`, `reloadInternal`,
 *    `asyncLoadTokenizer`, tvmjs `fetchTensorCache`) stores whole fetch responses with
 *    `cache.add(new Request(url))` in Cache Storage caches named `webllm/config`
 *    (mlc-chat-config.json) and `webllm/model` (tokenizer.json, tensor-cache.json and the
 *    `params_shard_*.bin` shards), keyed by the absolute URL `new URL(file, modelUrl).href`,
 *    where `modelUrl` is the catalogue's `model` with `resolve/main/` appended
 *    (`cleanModelUrl`), i.e. catalog.ts's `weightUrl`. (`webllm/wasm` holds model libraries,
 *    which kvscope does not use.) Only WebLLM's default `cacheBackend: "cache"` is read;
 *    its IndexedDB / OPFS back ends are not.
 * 2. kvscope's own cache `kvscope/model`, keyed by the same absolute URL. Entries carry their
 *    byte count and SHA-256 (headers `x-kvscope-bytes`, `x-kvscope-sha256`).
 * 3. The network. A file is stored in `kvscope/model` only after a complete download that
 *    passed the checks below.
 *
 * Integrity: a file's length must match the response's Content-Length (unencoded responses),
 * the byte count tensor-cache.json gives a shard, and, for `*.safetensors`, the extent its own
 * header implies; JSON files must parse. A cached entry that fails is deleted (from WebLLM's
 * cache too: WebLLM would otherwise keep serving it) and fetched again; a download that fails
 * throws ModelLoadError('integrity-failed') naming the file.
 *
 * Resume: every finished file is in the cache, so an interrupted load downloads only what is
 * missing. Within one load, a download that breaks off is continued with an HTTP Range
 * request (`If-Range` with the ETag / Last-Modified), or restarted when the server answers
 * 200 instead of 206. Large files (over two parts) are also checkpointed in parts of
 * `partBytes` (keys `URL?kvscope-part=N`), so a later load resumes them by Range from the
 * last complete part; the parts are deleted once the whole file is stored.
 */
import { ModelLoadError } from '../errors';
import type { ProgressCallback } from './source';

/** kvscope's own Cache Storage cache. */
export const KVSCOPE_CACHE_NAME = 'kvscope/model';
/** WebLLM's caches that hold model files (see the file comment for where this comes from). */
export const WEBLLM_CACHE_NAMES: readonly string[] = ['webllm/model', 'webllm/config'];

/** The part of the Cache API kvscope uses (the browser's `Cache` fits it). */
export interface CacheLike {
  match(request: string): Promise<Response | undefined>;
  put(request: string, response: Response): Promise<void>;
  delete(request: string): Promise<boolean>;
  keys?(): Promise<readonly { url: string }[]>;
}

/** The part of `CacheStorage` (`globalThis.caches`) kvscope uses. */
export interface CacheStorageLike {
  open(name: string): Promise<CacheLike>;
  has(name: string): Promise<boolean>;
  delete(name: string): Promise<boolean>;
}

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export interface ModelCacheOptions {
  /** false: neither read nor write any cache (downloads keep their checks and retries). Default true. */
  enabled?: boolean;
  /** Look in WebLLM's caches first (default true). */
  reuseWebLLM?: boolean;
  /** Cache Storage to use (default `globalThis.caches`; tests pass a fake). */
  storage?: CacheStorageLike;
  /** fetch to use (default `globalThis.fetch`). */
  fetch?: FetchLike;
  /** Times a broken-off download is continued or retried before giving up (default 3). */
  retries?: number;
  /** Milliseconds before retry n (times n); default 250. */
  retryDelayMs?: number;
  /** Checkpoint granularity for large downloads (default 32 MiB); files of at most two parts are not checkpointed. */
  partBytes?: number;
  /** Check the SHA-256 recorded with kvscope's own entries when reading them (default true). */
  verifyDigest?: boolean;
}

/** What the loader knows about a file before reading it. */
export interface FileExpectations {
  /** Exact byte count (e.g. a shard's `nbytes` in tensor-cache.json). */
  bytes?: number;
  /** What said so, for messages (default "the model index"). */
  bytesFrom?: string;
}

/** Where a file's bytes came from. */
export type FileOrigin = 'webllm-cache' | 'kvscope-cache' | 'network';

const H_BYTES = 'x-kvscope-bytes';
const H_SHA = 'x-kvscope-sha256';
const H_MISSING = 'x-kvscope-missing';
const H_OFFSET = 'x-kvscope-part-offset';
const H_TOTAL = 'x-kvscope-part-total';
const H_VALIDATOR = 'x-kvscope-part-validator';
const PART_PARAM = 'kvscope-part';

function globalCaches(): CacheStorageLike | undefined {
  const c = (globalThis as { caches?: CacheStorageLike }).caches;
  return c && typeof c.open === 'function' ? c : undefined;
}

/** Whether this context has Cache Storage (browsers' secure contexts; not Node). */
export function hasCacheStorage(): boolean {
  return globalCaches() !== undefined;
}

/**
 * Deletes kvscope's own cached model files: all of them, or only those under `modelUrl`
 * (a model directory URL). WebLLM's caches are left alone. Resolves to the number of entries
 * deleted (all: 1 when the cache existed, else 0). A no-op where there is no Cache Storage.
 */
export async function clearModelCache(modelUrl?: string | URL, storage: CacheStorageLike | undefined = globalCaches()): Promise<number> {
  if (!storage) return 0;
  if (modelUrl === undefined) return (await storage.delete(KVSCOPE_CACHE_NAME)) ? 1 : 0;
  if (!(await storage.has(KVSCOPE_CACHE_NAME))) return 0;
  const cache = await storage.open(KVSCOPE_CACHE_NAME);
  if (!cache.keys) throw new ModelLoadError('bad-model-url', 'This Cache Storage cannot list its keys; call clearModelCache() without a URL to clear everything.');
  const href = typeof modelUrl === 'string' ? modelUrl : modelUrl.href;
  const prefix = href.endsWith('/') ? href : `${href}/`;
  let n = 0;
  for (const req of await cache.keys()) {
    if (req.url.startsWith(prefix) && (await cache.delete(req.url))) n++;
  }
  return n;
}

/**
 * Whether every file of an MLC model directory (`weightUrl`, e.g. catalog.ts's `weightUrl`)
 * is in Cache Storage, in WebLLM's caches or kvscope's own: mlc-chat-config.json,
 * tensor-cache.json and each shard it lists. Nothing is downloaded; false without Cache Storage.
 */
export async function isModelCached(weightUrl: string, storage: CacheStorageLike | undefined = globalCaches()): Promise<boolean> {
  if (!storage) return false;
  const caches: CacheLike[] = [];
  for (const name of [...WEBLLM_CACHE_NAMES, KVSCOPE_CACHE_NAME]) {
    if (await storage.has(name).catch(() => false)) caches.push(await storage.open(name));
  }
  const find = async (url: string): Promise<Response | undefined> => {
    for (const c of caches) {
      const hit = await c.match(url).catch(() => undefined);
      if (hit && hit.ok && hit.headers.get(H_MISSING) !== '1') return hit;
    }
    return undefined;
  };
  const base = weightUrl.endsWith('/') ? weightUrl : `${weightUrl}/`;
  const index = await find(`${base}tensor-cache.json`);
  if (!index || !(await find(`${base}mlc-chat-config.json`))) return false;
  let records: { dataPath?: unknown }[];
  try {
    records = ((await index.json()) as { records?: { dataPath?: unknown }[] }).records ?? [];
  } catch {
    return false;
  }
  for (const r of records) {
    if (typeof r.dataPath !== 'string' || !(await find(new URL(r.dataPath, base).href))) return false;
  }
  return records.length > 0;
}

/** Grows as bytes arrive; preallocated when the size is known. */
class ByteSink {
  private buf: Uint8Array;
  length = 0;
  constructor(expected: number) {
    this.buf = new Uint8Array(expected > 0 ? expected : 1 << 16);
  }
  push(chunk: Uint8Array): void {
    if (this.length + chunk.byteLength > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(this.length + chunk.byteLength, this.buf.byteLength * 2));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
    }
    this.buf.set(chunk, this.length);
    this.length += chunk.byteLength;
  }
  reset(): void {
    this.length = 0;
  }
  /** Makes room for `total` bytes in all (one allocation instead of repeated doubling). */
  reserve(total: number): void {
    if (total <= this.buf.byteLength) return;
    const next = new Uint8Array(total);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  view(start = 0, end = this.length): Uint8Array {
    return this.buf.subarray(start, end);
  }
  bytes(): Uint8Array {
    return this.length === this.buf.byteLength ? this.buf : this.buf.slice(0, this.length);
  }
}

/** Reads a whole body, reporting (offset + read, total). */
async function readBody(response: Response, sink: ByteSink, onChunk: () => void | Promise<void>): Promise<void> {
  if (!response.body) {
    sink.push(new Uint8Array(await response.arrayBuffer()));
    await onChunk();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!value || value.byteLength === 0) continue;
      sink.push(value);
      await onChunk();
    }
  } finally {
    reader.releaseLock();
  }
}

/** Content-Length when it is the body's length (no content coding), else undefined. */
function plainLength(response: Response): number | undefined {
  const enc = (response.headers.get('content-encoding') ?? 'identity').trim().toLowerCase();
  if (enc !== '' && enc !== 'identity') return undefined;
  const h = response.headers.get('content-length');
  return h !== null && /^\d+$/.test(h.trim()) ? Number(h) : undefined;
}

function parseContentRange(h: string | null): { start: number; end: number; total?: number } | undefined {
  const m = h ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(h.trim()) : null;
  if (!m) return undefined;
  const r: { start: number; end: number; total?: number } = { start: Number(m[1]), end: Number(m[2]) };
  if (m[3] !== '*') r.total = Number(m[3]);
  return r;
}

/** Problems a file's bytes show on their own: truncated safetensors, broken JSON. */
export function checkFileContent(name: string, bytes: Uint8Array): string | undefined {
  const base = name.split(/[?#]/)[0]!.toLowerCase();
  if (base.endsWith('.json')) {
    try {
      JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch (e) {
      return `it is not valid JSON (${(e as Error).message})`;
    }
    return undefined;
  }
  if (base.endsWith('.safetensors')) {
    if (bytes.byteLength < 8) return `${bytes.byteLength} bytes, shorter than the 8-byte safetensors header length`;
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
    if (n > bytes.byteLength - 8) return `its safetensors header claims ${n} bytes but the file has ${bytes.byteLength}`;
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
    } catch {
      return 'its safetensors header is not valid JSON';
    }
    let end = 0;
    for (const [k, v] of Object.entries(header ?? {})) {
      if (k === '__metadata__') continue;
      const off = (v as { data_offsets?: unknown } | null)?.data_offsets;
      if (Array.isArray(off) && typeof off[1] === 'number') end = Math.max(end, off[1]);
    }
    const want = 8 + n + end;
    if (want !== bytes.byteLength) return `${bytes.byteLength} bytes, but its safetensors header implies ${want}`;
  }
  return undefined;
}

async function sha256Hex(bytes: Uint8Array): Promise<string | undefined> {
  const subtle = (globalThis as { crypto?: Crypto }).crypto?.subtle;
  if (!subtle) return undefined;
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

function partKey(url: string, i: number): string {
  return `${url}${url.includes('?') ? '&' : '?'}${PART_PARAM}=${i}`;
}

const sleep = (ms: number) => (ms > 0 ? new Promise<void>((r) => setTimeout(r, ms)) : Promise.resolve());

interface Resumed {
  sink: ByteSink;
  parts: number;
  total?: number;
  validator?: string;
}

/**
 * Reads model files through Cache Storage (see the file comment). One instance serves one
 * model load; `storage` null means no caching (downloads keep their checks and retries).
 */
export class ModelFileCache {
  readonly storage: CacheStorageLike | null;
  /** Where each file (absolute URL) came from in this load. */
  readonly origins = new Map<string, FileOrigin>();
  private readonly fetchFn: FetchLike;
  private readonly reuseWebLLM: boolean;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly partBytes: number;
  private readonly verifyDigest: boolean;
  private own?: Promise<CacheLike>;
  private webllm?: Promise<CacheLike[]>;
  private readonly missing = new Set<string>();
  /** URLs that may have checkpointed parts in the own cache (deleted once the file is stored). */
  private readonly withParts = new Set<string>();
  private readonly warned = new Set<string>();

  constructor(options: ModelCacheOptions = {}) {
    const enabled = options.enabled ?? true;
    this.storage = enabled ? (options.storage ?? globalCaches() ?? null) : null;
    this.fetchFn = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.reuseWebLLM = options.reuseWebLLM ?? true;
    this.retries = Math.max(0, Math.floor(options.retries ?? 3));
    this.retryDelayMs = Math.max(0, options.retryDelayMs ?? 250);
    this.partBytes = Math.max(1, Math.floor(options.partBytes ?? 32 << 20));
    this.verifyDigest = options.verifyDigest ?? true;
  }

  /**
   * The file at `url` (`name` is its name in the model directory, for checks); undefined when
   * `optional` and the server says it does not exist.
   */
  async read(
    url: string,
    name: string,
    options: { optional: boolean; expect?: FileExpectations; onProgress?: ProgressCallback; init?: RequestInit },
  ): Promise<Uint8Array | undefined> {
    const { optional, expect = {}, onProgress } = options;
    if (this.storage) {
      for (const cache of await this.webllmCaches()) {
        const bytes = await this.readEntry(cache, url, name, expect, onProgress, false);
        if (bytes) {
          this.origins.set(url, 'webllm-cache');
          return bytes;
        }
      }
      const own = await this.ownCache();
      if (own) {
        const hit = await own.match(url).catch(() => undefined);
        if (hit?.headers.get(H_MISSING) === '1') {
          if (optional) {
            await hit.body?.cancel().catch(() => undefined);
            return undefined;
          }
          await own.delete(url).catch(() => false);
        } else if (hit) {
          const bytes = await this.checkEntry(own, hit, url, name, expect, onProgress, true);
          if (bytes) {
            this.origins.set(url, 'kvscope-cache');
            return bytes;
          }
        }
      }
    }
    const bytes = await this.download(url, name, optional, expect, onProgress, options.init);
    if (bytes === undefined) {
      this.missing.add(url);
      return undefined;
    }
    this.origins.set(url, 'network');
    await this.store(url, bytes);
    return bytes;
  }

  /**
   * Records the optional files the server said do not exist, so that the next load of this
   * model needs no network for them. Called after a load succeeded (a failed load, e.g. a
   * mistyped URL, must not leave "missing" marks behind).
   */
  async finish(): Promise<void> {
    const own = this.storage ? await this.ownCache() : undefined;
    if (!own) return;
    for (const url of this.missing) {
      await this.put(own, url, new Response(null, { status: 200, headers: { [H_MISSING]: '1' } }));
    }
    this.missing.clear();
  }

  private ownCache(): Promise<CacheLike | undefined> {
    const storage = this.storage;
    if (!storage) return Promise.resolve(undefined);
    this.own ??= storage.open(KVSCOPE_CACHE_NAME);
    return this.own.catch((e: unknown) => {
      this.warnOnce('open', `kvscope: Cache Storage "${KVSCOPE_CACHE_NAME}" could not be opened (${(e as Error).message}); model files are not cached.`);
      return undefined;
    });
  }

  /** WebLLM's caches that exist (has() first: open() would create empty ones). */
  private webllmCaches(): Promise<CacheLike[]> {
    const storage = this.storage;
    if (!storage || !this.reuseWebLLM) return Promise.resolve([]);
    this.webllm ??= (async () => {
      const out: CacheLike[] = [];
      for (const name of WEBLLM_CACHE_NAMES) {
        try {
          if (await storage.has(name)) out.push(await storage.open(name));
        } catch {
          // An unreadable foreign cache is as good as none.
        }
      }
      return out;
    })();
    return this.webllm;
  }

  private async readEntry(cache: CacheLike, url: string, name: string, expect: FileExpectations, onProgress: ProgressCallback | undefined, own: boolean): Promise<Uint8Array | undefined> {
    const hit = await cache.match(url).catch(() => undefined);
    return hit ? this.checkEntry(cache, hit, url, name, expect, onProgress, own) : undefined;
  }

  /** The entry's bytes when they pass every check; otherwise deletes the entry and gives undefined. */
  private async checkEntry(
    cache: CacheLike,
    hit: Response,
    url: string,
    name: string,
    expect: FileExpectations,
    onProgress: ProgressCallback | undefined,
    own: boolean,
  ): Promise<Uint8Array | undefined> {
    const recorded = own ? Number(hit.headers.get(H_BYTES) ?? NaN) : plainLength(hit);
    const total = expect.bytes ?? (recorded !== undefined && Number.isFinite(recorded) ? recorded : 0);
    const sink = new ByteSink(total);
    let problem: string | undefined;
    try {
      onProgress?.(0, total);
      await readBody(hit, sink, () => onProgress?.(sink.length, Math.max(total, sink.length)));
    } catch (e) {
      problem = `reading it failed (${(e as Error).message})`;
    }
    const bytes = sink.bytes();
    if (!problem && !hit.ok) problem = `it holds an HTTP ${hit.status} response`;
    if (!problem && own && !(recorded !== undefined && Number.isFinite(recorded))) problem = 'it has no recorded size';
    if (!problem && recorded !== undefined && Number.isFinite(recorded) && bytes.byteLength !== recorded) {
      problem = `${bytes.byteLength} bytes, but ${own ? 'it was stored with' : 'its Content-Length says'} ${recorded}`;
    }
    if (!problem) problem = this.sizeProblem(bytes, expect) ?? checkFileContent(name, bytes);
    if (!problem && own && this.verifyDigest) {
      const want = hit.headers.get(H_SHA);
      const got = want ? await sha256Hex(bytes) : undefined;
      if (want && got && want !== got) problem = 'its SHA-256 does not match the one recorded when it was stored';
    }
    if (!problem) {
      onProgress?.(bytes.byteLength, bytes.byteLength);
      return bytes;
    }
    console.warn(`kvscope: the cached copy of ${url} is unusable (${problem}); deleting it and fetching the file again.`);
    await cache.delete(url).catch(() => false);
    onProgress?.(0, total);
    return undefined;
  }

  private sizeProblem(bytes: Uint8Array, expect: FileExpectations): string | undefined {
    if (expect.bytes !== undefined && bytes.byteLength !== expect.bytes) {
      return `${bytes.byteLength} bytes, but ${expect.bytesFrom ?? 'the model index'} says ${expect.bytes}`;
    }
    return undefined;
  }

  private async store(url: string, bytes: Uint8Array): Promise<void> {
    const own = this.storage ? await this.ownCache() : undefined;
    if (!own) return;
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', [H_BYTES]: String(bytes.byteLength) };
    const sha = await sha256Hex(bytes);
    if (sha) headers[H_SHA] = sha;
    if ((await this.put(own, url, new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers }))) && this.withParts.has(url)) {
      await this.deleteParts(own, url);
      this.withParts.delete(url);
    }
  }

  private async put(cache: CacheLike, key: string, response: Response): Promise<boolean> {
    try {
      await cache.put(key, response);
      return true;
    } catch (e) {
      this.warnOnce('put', `kvscope: could not store ${key} in Cache Storage (${(e as Error).message}); files that could not be stored are downloaded again next time.`);
      return false;
    }
  }

  private warnOnce(kind: string, message: string): void {
    if (this.warned.has(kind)) return;
    this.warned.add(kind);
    console.warn(message);
  }

  /** Consecutive checkpointed parts from offset 0 that agree with each other. */
  private async resume(own: CacheLike | undefined, url: string, expect: FileExpectations): Promise<Resumed> {
    const sink = new ByteSink(expect.bytes ?? 0);
    const out: Resumed = { sink, parts: 0 };
    if (!own) return out;
    for (let i = 0; ; i++) {
      const hit = await own.match(partKey(url, i)).catch(() => undefined);
      if (!hit) break;
      const offset = Number(hit.headers.get(H_OFFSET));
      const total = Number(hit.headers.get(H_TOTAL));
      const size = Number(hit.headers.get(H_BYTES));
      const validator = hit.headers.get(H_VALIDATOR) ?? '';
      let ok = offset === sink.length && Number.isFinite(total) && total > 0 && (i === 0 || (total === out.total && validator === (out.validator ?? '')));
      if (ok && expect.bytes !== undefined && total !== expect.bytes) ok = false;
      if (ok) {
        const before = sink.length;
        try {
          await readBody(hit, sink, () => undefined);
        } catch {
          ok = false;
        }
        if (sink.length - before !== size) ok = false;
        if (!ok) sink.length = before;
      }
      if (!ok) {
        await this.deleteParts(own, url, i);
        break;
      }
      out.parts = i + 1;
      this.withParts.add(url);
      out.total = total;
      if (validator) out.validator = validator;
    }
    return out;
  }

  /** Deletes parts `from`.. of `url` (every part when the cache can list its keys). */
  private async deleteParts(own: CacheLike, url: string, from = 0): Promise<void> {
    if (own.keys) {
      const prefix = partKey(url, 0).slice(0, -1);
      for (const req of await own.keys().catch(() => [])) {
        if (req.url.startsWith(prefix) && Number(req.url.slice(prefix.length)) >= from) await own.delete(req.url).catch(() => false);
      }
      return;
    }
    for (let i = from; await own.delete(partKey(url, i)).catch(() => false); i++);
  }

  private async download(
    url: string,
    name: string,
    optional: boolean,
    expect: FileExpectations,
    onProgress: ProgressCallback | undefined,
    init: RequestInit | undefined,
  ): Promise<Uint8Array | undefined> {
    const own = this.storage ? await this.ownCache() : undefined;
    const r = await this.resume(own, url, expect);
    const sink = r.sink;
    let total = r.total ?? expect.bytes;
    let validator = r.validator;
    let parts = r.parts;
    /** Content-Length of the one 200 response the whole body came from, for the final check. */
    let declared: number | undefined;
    let attempt = 0;
    const report = () => onProgress?.(sink.length, Math.max(total ?? 0, sink.length));
    report();
    const restart = async () => {
      sink.reset();
      validator = undefined;
      total = expect.bytes;
      if (own && parts > 0) await this.deleteParts(own, url);
      parts = 0;
    };
    const failure = (why: string, cause?: unknown) =>
      new ModelLoadError(
        'bad-model-url',
        `Download of ${url} failed${sink.length > 0 ? ` after ${sink.length}${total ? ` of ${total}` : ''} bytes` : ''}: ${why}` +
          (attempt > 0 ? ` (${attempt} ${attempt === 1 ? 'retry' : 'retries'})` : '') +
          (parts > 0 ? `; ${parts} checkpointed part(s) are kept, and the next load resumes from there.` : '.'),
        cause === undefined ? undefined : { cause },
      );
    for (;;) {
      const resuming = sink.length > 0;
      const headers = new Headers(init?.headers);
      if (resuming) {
        headers.set('range', `bytes=${sink.length}-`);
        if (validator && !validator.startsWith('W/')) headers.set('if-range', validator);
      }
      let response: Response;
      try {
        response = await this.fetchFn(url, { ...init, headers });
      } catch (e) {
        if (attempt >= this.retries) throw failure((e as Error).message, e);
        await sleep(this.retryDelayMs * ++attempt);
        continue;
      }
      if (resuming && response.status === 206) {
        const cr = parseContentRange(response.headers.get('content-range'));
        const etag = response.headers.get('etag');
        if (!cr || cr.start !== sink.length || (total !== undefined && cr.total !== undefined && cr.total !== total) || (validator && etag && etag !== validator)) {
          // Not the continuation asked for: start over from byte 0.
          await response.body?.cancel().catch(() => undefined);
          await restart();
          if (attempt >= this.retries) throw failure('the server answered the range request with a different part of the file');
          attempt++;
          continue;
        }
        if (cr.total !== undefined) {
          total = cr.total;
          sink.reserve(cr.total);
        }
        declared = undefined;
      } else if (response.status === 200) {
        // A first request, or a server that ignores Range / a file that changed: whole body.
        if (resuming) await restart();
        if (!/\.html?$/i.test(name) && (response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/html')) {
          await response.body?.cancel().catch(() => undefined);
          if (optional) return undefined;
          throw new ModelLoadError('bad-model-url', `Could not fetch ${url}: the server answered with an HTML page, not the file (is the model directory served at this URL?).`);
        }
        declared = plainLength(response);
        if (declared !== undefined) {
          total = expect.bytes ?? declared;
          sink.reserve(declared);
        }
        validator = response.headers.get('etag') ?? response.headers.get('last-modified') ?? undefined;
      } else if (resuming && response.status === 416) {
        await response.body?.cancel().catch(() => undefined);
        await restart();
        if (attempt >= this.retries) throw failure('the server refused the range request (HTTP 416)');
        attempt++;
        continue;
      } else {
        await response.body?.cancel().catch(() => undefined);
        if (!resuming && optional && (response.status === 404 || response.status === 410)) return undefined;
        const msg = `Could not fetch ${url}: HTTP ${response.status} ${response.statusText}`.trim();
        if ((response.status >= 500 || response.status === 429) && attempt < this.retries) {
          await sleep(this.retryDelayMs * ++attempt);
          continue;
        }
        throw new ModelLoadError('bad-model-url', msg);
      }
      let checkpoint = own !== undefined && total !== undefined && total > 2 * this.partBytes;
      report();
      try {
        await readBody(response, sink, async () => {
          report();
          while (checkpoint && sink.length >= (parts + 1) * this.partBytes && (parts + 1) * this.partBytes < total!) {
            const start = parts * this.partBytes;
            const part = sink.view(start, start + this.partBytes).slice();
            const headers: Record<string, string> = {
              'content-type': 'application/octet-stream',
              [H_OFFSET]: String(start),
              [H_TOTAL]: String(total),
              [H_BYTES]: String(part.byteLength),
            };
            if (validator) headers[H_VALIDATOR] = validator;
            if (!(await this.put(own!, partKey(url, parts), new Response(part, { status: 200, headers })))) {
              checkpoint = false; // e.g. over quota: no further parts for this file
              break;
            }
            this.withParts.add(url);
            parts++;
          }
        });
      } catch (e) {
        if (attempt >= this.retries) throw failure((e as Error).message, e);
        await sleep(this.retryDelayMs * ++attempt);
        continue;
      }
      break;
    }
    const bytes = sink.bytes();
    const problem =
      declared !== undefined && bytes.byteLength !== declared
        ? `${bytes.byteLength} bytes arrived, but the response's Content-Length says ${declared}`
        : total !== undefined && bytes.byteLength !== total && expect.bytes === undefined
          ? `${bytes.byteLength} bytes arrived, but the server said the file has ${total}`
          : (this.sizeProblem(bytes, expect) ?? checkFileContent(name, bytes));
    if (problem) {
      if (own && parts > 0) await this.deleteParts(own, url);
      this.withParts.delete(url);
      throw new ModelLoadError('integrity-failed', `Download of ${url} failed its integrity check: ${problem}. It was not cached; try loading again.`);
    }
    onProgress?.(bytes.byteLength, bytes.byteLength);
    return bytes;
  }
}
