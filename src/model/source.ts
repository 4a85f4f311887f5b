/**
 * Where a model's files come from: a URL (fetch, streamed with byte progress; through Cache
 * Storage where the context has it, see cache-store.ts), a local directory in Node (node:fs,
 * imported lazily so browser bundles never see it), or an in-memory map (tests, files a user
 * dropped on the page).
 */
import { ModelLoadError } from '../errors';
import { type FileExpectations, type ModelCacheOptions, ModelFileCache, hasCacheStorage } from './cache-store';

/** Bytes read so far and the expected total (0 when unknown). */
export type ProgressCallback = (loaded: number, total: number) => void;

export interface ModelSource {
  /** The URL or path, for messages. */
  readonly location: string;
  /** Where `name` lives inside this source (a URL or a path), for messages. */
  describe(name: string): string;
  /**
   * The whole file; a missing file or failed read throws ModelLoadError('bad-model-url').
   * `expect` is what the caller knows of the file (its exact size); sources that check it
   * (a cached URL source) throw ModelLoadError('integrity-failed') when a download contradicts it.
   */
  read(name: string, onProgress?: ProgressCallback, expect?: FileExpectations): Promise<Uint8Array>;
  /** Like `read`, but undefined when the file does not exist (other failures still throw). */
  readOptional(name: string, onProgress?: ProgressCallback, expect?: FileExpectations): Promise<Uint8Array | undefined>;
  /** Called once a whole model was loaded from this source (a cache records what it learnt). */
  finish?(): Promise<void>;
}

const utf8 = new TextDecoder('utf-8');

export function bytesToText(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/** Parses a JSON file's bytes; invalid JSON is a ModelLoadError with `code` and the file named. */
export function parseJsonFile(
  bytes: Uint8Array,
  where: string,
  code: 'bad-config' | 'bad-weights' = 'bad-config',
): unknown {
  try {
    return JSON.parse(bytesToText(bytes));
  } catch (e) {
    throw new ModelLoadError(code, `${where} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

export async function readJson(source: ModelSource, name: string): Promise<unknown> {
  return parseJsonFile(await source.read(name), source.describe(name));
}

export async function readOptionalJson(source: ModelSource, name: string): Promise<unknown | undefined> {
  const bytes = await source.readOptional(name);
  return bytes === undefined ? undefined : parseJsonFile(bytes, source.describe(name));
}

const SCHEME = /^[a-z][a-z0-9+.-]*:/i;
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

export interface OpenSourceOptions {
  /**
   * Cache Storage for URL sources (cache-store.ts): `true` or options to use it where `caches`
   * exists (browsers), `false` to neither read nor write any cache but still check downloads.
   * Default: none (plain fetch), so that callers other than loadModel (e.g. a sharing map
   * that may be rewritten in place) never get a stale copy. Node has no `caches` and reads
   * URLs straight from the network unless `storage` is given here.
   */
  cache?: boolean | ModelCacheOptions;
}

/**
 * Opens a model directory. Strings with a URL scheme (http:, https:, blob:, ...) are URLs;
 * `file:` URLs and plain strings are local paths in Node. In a browser a plain string is a
 * URL relative to the page.
 */
export function openModelSource(location: string | URL, options: OpenSourceOptions = {}): ModelSource {
  const text = typeof location === 'string' ? location : location.href;
  if (/^file:/i.test(text)) {
    if (!isNode) throw new ModelLoadError('bad-model-url', `Cannot read ${text}: file: URLs need Node.`);
    return new NodeDirSource(decodeURIComponent(new URL(text).pathname));
  }
  if (SCHEME.test(text) && !/^[a-z]:[\\/]/i.test(text)) return new UrlSource(text, undefined, urlCache(text, options.cache));
  if (isNode) return new NodeDirSource(text);
  const base = typeof location === 'string' && typeof globalThis.location !== 'undefined' ? globalThis.location.href : undefined;
  const url = base ? new URL(text, base).href : text;
  return new UrlSource(url, undefined, urlCache(url, options.cache));
}

/**
 * The cache layer for a URL source: where Cache Storage exists (or a `storage` is given),
 * a ModelFileCache (with `cache: false`, one that stores nothing but still checks downloads);
 * otherwise (Node) none, and fetch is used as is. blob: and data: URLs are never cached.
 */
function urlCache(url: string, cache: boolean | ModelCacheOptions | undefined): ModelFileCache | undefined {
  if (cache === undefined || !/^https?:/i.test(url)) return undefined;
  const opts: ModelCacheOptions = typeof cache === 'object' ? cache : cache === false ? { enabled: false } : {};
  if (!opts.storage && !hasCacheStorage()) return undefined;
  return new ModelFileCache(opts);
}

/**
 * Reads files under a base URL with fetch, streaming each body and reporting bytes; through
 * `cache` (Cache Storage, with resume and integrity checks) when one is given.
 */
export class UrlSource implements ModelSource {
  readonly location: string;
  private readonly base: string;
  constructor(
    baseUrl: string,
    private readonly init?: RequestInit,
    readonly cache?: ModelFileCache,
  ) {
    this.location = baseUrl;
    this.base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  }
  describe(name: string): string {
    try {
      return new URL(name, this.base).href;
    } catch {
      return this.base + name;
    }
  }
  async read(name: string, onProgress?: ProgressCallback, expect?: FileExpectations): Promise<Uint8Array> {
    const bytes = await this.fetchFile(name, onProgress, false, expect);
    return bytes!;
  }
  readOptional(name: string, onProgress?: ProgressCallback, expect?: FileExpectations): Promise<Uint8Array | undefined> {
    return this.fetchFile(name, onProgress, true, expect);
  }
  async finish(): Promise<void> {
    await this.cache?.finish();
  }
  private async fetchFile(name: string, onProgress: ProgressCallback | undefined, optional: boolean, expect?: FileExpectations): Promise<Uint8Array | undefined> {
    const url = this.describe(name);
    if (this.cache) {
      return this.cache.read(url, name, { optional, ...(expect ? { expect } : {}), ...(onProgress ? { onProgress } : {}), ...(this.init ? { init: this.init } : {}) });
    }
    let response: Response;
    try {
      response = await fetch(url, this.init);
    } catch (e) {
      throw new ModelLoadError('bad-model-url', `Could not fetch ${url}: ${(e as Error).message}`, { cause: e });
    }
    if (!response.ok) {
      if (optional && (response.status === 404 || response.status === 410)) return undefined;
      throw new ModelLoadError('bad-model-url', `Could not fetch ${url}: HTTP ${response.status} ${response.statusText}`.trim());
    }
    // Dev servers with a single-page-app fallback (Vite's among them) answer a missing file
    // with index.html and status 200: an HTML page is never a model file.
    if (!/\.html?$/i.test(name) && (response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/html')) {
      if (optional) return undefined;
      throw new ModelLoadError('bad-model-url', `Could not fetch ${url}: the server answered with an HTML page, not the file (is the model directory served at this URL?).`);
    }
    const header = response.headers.get('content-length');
    const expected = header !== null && /^\d+$/.test(header) ? Number(header) : 0;
    try {
      return await readStream(response, expected, onProgress);
    } catch (e) {
      throw new ModelLoadError('bad-model-url', `Download of ${url} failed: ${(e as Error).message}`, { cause: e });
    }
  }
}

async function readStream(response: Response, expected: number, onProgress?: ProgressCallback): Promise<Uint8Array> {
  if (!response.body) {
    const all = new Uint8Array(await response.arrayBuffer());
    onProgress?.(all.byteLength, all.byteLength);
    return all;
  }
  const reader = response.body.getReader();
  // With a Content-Length, fill one buffer in place; otherwise collect chunks. A compressed
  // response may decode to more bytes than the header says, so both paths can grow.
  let buffer: Uint8Array = new Uint8Array(expected);
  let chunks: Uint8Array[] | undefined = expected > 0 ? undefined : [];
  let loaded = 0;
  onProgress?.(0, expected);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!value || value.byteLength === 0) continue;
    if (!chunks && loaded + value.byteLength > buffer.byteLength) chunks = [buffer.subarray(0, loaded)];
    if (chunks) chunks.push(value);
    else buffer.set(value, loaded);
    loaded += value.byteLength;
    onProgress?.(loaded, Math.max(expected, loaded));
  }
  if (chunks) buffer = concatBytes(chunks, loaded);
  else if (loaded < buffer.byteLength) buffer = buffer.subarray(0, loaded);
  onProgress?.(loaded, loaded);
  return buffer;
}

export function concatBytes(chunks: Uint8Array[], total = chunks.reduce((n, c) => n + c.byteLength, 0)): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

type NodeFs = typeof import('node:fs/promises');
let nodeFs: Promise<NodeFs> | undefined;

/** node:fs/promises, imported on first use; the variable specifier keeps bundlers out. */
export function loadNodeFs(): Promise<NodeFs> {
  if (!nodeFs) {
    const specifier = 'node:fs/promises';
    nodeFs = import(/* @vite-ignore */ specifier) as Promise<NodeFs>;
  }
  return nodeFs;
}

export function joinPath(dir: string, name: string): string {
  if (dir === '') return name;
  return dir.endsWith('/') || dir.endsWith('\\') ? dir + name : `${dir}/${name}`;
}

const READ_CHUNK = 16 << 20;

/** Reads files from a local directory (Node only). */
export class NodeDirSource implements ModelSource {
  constructor(readonly location: string) {}
  describe(name: string): string {
    return joinPath(this.location, name);
  }
  async read(name: string, onProgress?: ProgressCallback): Promise<Uint8Array> {
    return (await this.readFile(name, onProgress, false))!;
  }
  readOptional(name: string, onProgress?: ProgressCallback): Promise<Uint8Array | undefined> {
    return this.readFile(name, onProgress, true);
  }
  private async readFile(name: string, onProgress: ProgressCallback | undefined, optional: boolean): Promise<Uint8Array | undefined> {
    const path = this.describe(name);
    const fs = await loadNodeFs();
    let handle: Awaited<ReturnType<NodeFs['open']>>;
    try {
      handle = await fs.open(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (optional && code === 'ENOENT') return undefined;
      const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
      throw new ModelLoadError('bad-model-url', `Could not read ${path}: ${why}`, { cause: e });
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new ModelLoadError('bad-model-url', `Could not read ${path}: not a regular file`);
      const total = stat.size;
      const out = new Uint8Array(total);
      let loaded = 0;
      onProgress?.(0, total);
      while (loaded < total) {
        const { bytesRead } = await handle.read(out, loaded, Math.min(READ_CHUNK, total - loaded), loaded);
        if (bytesRead === 0) break;
        loaded += bytesRead;
        onProgress?.(loaded, total);
      }
      return loaded === total ? out : out.subarray(0, loaded);
    } catch (e) {
      if (e instanceof ModelLoadError) throw e;
      throw new ModelLoadError('bad-model-url', `Could not read ${path}: ${(e as Error).message}`, { cause: e });
    } finally {
      await handle.close();
    }
  }
}

/** Files held in memory, keyed by name (tests; files a user dropped on the page). */
export class MemorySource implements ModelSource {
  constructor(
    readonly files: Map<string, Uint8Array>,
    readonly location = 'memory:',
  ) {}
  describe(name: string): string {
    return `${this.location}${this.location.endsWith('/') || this.location.endsWith(':') ? '' : '/'}${name}`;
  }
  async read(name: string, onProgress?: ProgressCallback): Promise<Uint8Array> {
    const bytes = this.files.get(name);
    if (!bytes) throw new ModelLoadError('bad-model-url', `Could not read ${this.describe(name)}: no such file`);
    onProgress?.(bytes.byteLength, bytes.byteLength);
    return bytes;
  }
  async readOptional(name: string, onProgress?: ProgressCallback): Promise<Uint8Array | undefined> {
    return this.files.has(name) ? this.read(name, onProgress) : undefined;
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Shard files fetched at once (browsers allow about 6 connections per host). */
export const PARALLEL_FILES = 4;
