/**
 * `createEngine()`: kvscope's OpenAI / WebLLM-style entry point. One engine serves one
 * model; requests are queued and run one after another (never interleaved), and the cache
 * persists between them, so a chat that re-sends its whole conversation each turn only
 * prefills the new turn.
 */
import type { Engine } from '../engine/engine';
import { InvalidArgumentError, KvscopeError } from '../errors';
import type { ChatMessage } from '../model/chat-template';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import type { SharingMap } from '../kv/sharing';
import type { BackendLoadOptions, BackendRequest, BackendResult, EngineBackend, LocalBackend } from './backend';
import type {
  CalibrateSharingOptions,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionFinishReason,
  ChatCompletionRequest,
  ChatCompletionRequestNonStreaming,
  ChatCompletionRequestStreaming,
  CompletionUsage,
  CreateEngineOptions,
  ModelInfo,
  PolicyInfo,
  SharingSavings,
  SnapshotOptions,
} from './types';

/** Parameters of `setPolicy(name, params)`: the budget plus the policy's own parameters. */
export type PolicyParams = { budget?: number } & Record<string, number | boolean | string | undefined>;

export interface ChatCompletions {
  /** Streams `chat.completion.chunk`s: text deltas, then one with `finish_reason`, then one with `usage`. */
  create(request: ChatCompletionRequestStreaming): Promise<AsyncIterableIterator<ChatCompletionChunk>>;
  /** Resolves when the whole answer is generated. */
  create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<AsyncIterableIterator<ChatCompletionChunk> | ChatCompletion>;
}

export interface KvscopeEngine {
  /** OpenAI-shaped chat completions. */
  readonly chat: { readonly completions: ChatCompletions };
  /** The loaded model. */
  readonly model: ModelInfo;
  /** True when the engine runs in a Web Worker. */
  readonly inWorker: boolean;
  /** The underlying `Engine` when it runs on this thread (lower-level calls: teacherForce, tokenizer); undefined in a worker. */
  readonly inThreadEngine: Engine | undefined;
  /** Ends the running request (its finish_reason becomes 'abort'); queued requests still run. */
  interrupt(): Promise<void>;
  /**
   * Sets the cache policy for the next request (it waits for the running and queued ones).
   * At that request the cache is re-allocated for the new policy and the whole conversation
   * is prefilled again under it: entries the old policy evicted are recomputed from their
   * tokens, not restored, so the answer is what the new policy alone would give.
   */
  setPolicy(name: string, params?: PolicyParams): Promise<void>;
  setPolicy(spec: PolicySpec): Promise<void>;
  /** The policy in effect for the next request. */
  readonly policy: PolicySpec;
  /** The cache policies this build offers, with their parameters (for pickers and specs). */
  listPolicies(): Promise<PolicyInfo[]>;
  /**
   * Runs a KVSharer calibration on the loaded model (in the worker, queued like a request):
   * per-layer mean keys and values over the calibration set, then the greedy search that
   * accepts a (later layer reads an earlier layer's cache) pair while the final hidden states
   * stay within `threshold` cosine similarity of the original model's, until the target number
   * of shared layers. Resolves with the sharing map as JSON (`kv-sharing.json`'s format); it
   * does not apply it (see `setSharing`). The cache is emptied, so the next request prefills its
   * whole conversation again. `interrupt()` or `signal` abort it (an `AbortError`).
   */
  calibrateSharing(options?: CalibrateSharingOptions): Promise<SharingMap>;
  /**
   * Chooses a layer-sharing map (or none, with `null`) for the next request; like `setPolicy`,
   * the cache is then re-allocated (shared layers allocate nothing) and the conversation
   * prefilled again. A map for another model shape, with chains or with a layer reading a
   * later layer rejects with `InvalidArgumentError`.
   */
  setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void>;
  /** The sharing map in effect for the next request (`null`: none). */
  readonly sharing: SharingMap | Record<string, number> | null;
  /**
   * Loads Attention-Gate weights (a safetensors file URL, e.g. `<model>/gates/gate-50.safetensors`)
   * for the `attention-gate` policy, or removes them with `null`. The cache is rebuilt and the
   * conversation prefilled again at the next request.
   */
  setGates(src: string | null): Promise<void>;
  /** The KV bytes a sharing map saves under the policy of the next request (validates the map). */
  sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings>;
  /**
   * Calls `callback` with cache snapshots while tokens are generated (every `everyTokens`
   * tokens or `everyMs` ms). Returns a function that unsubscribes. Needs the cache manager;
   * without it no snapshots are sent.
   */
  onCacheSnapshot(callback: (s: CacheSnapshot) => void, options?: SnapshotOptions): () => void;
  /** Frees the GPU memory (and ends the worker). `reload()` loads again. */
  unload(): Promise<void>;
  /** Loads the model again (after a device loss, or a different model / context with `options`). The cache starts empty. */
  reload(options?: Partial<CreateEngineOptions>): Promise<ModelInfo>;
  /** Destroys the engine's GPU device as a real device loss would: for tests and fault drills. */
  simulateDeviceLoss(): Promise<void>;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function workersAvailable(): boolean {
  return typeof Worker === 'function' && !isNode;
}

/** A string model location relative to the page becomes absolute, since a worker resolves URLs against its own (blob:) URL. */
function resolveModel(model: CreateEngineOptions['model']): BackendLoadOptions['model'] {
  if (model instanceof URL) return model.href;
  if (typeof model !== 'string') return model;
  const loc = (globalThis as { location?: { href: string } }).location;
  if (!isNode && loc && !/^[a-z][a-z0-9+.-]*:/i.test(model)) return new URL(model, loc.href).href;
  return model;
}

function loadOptions(o: CreateEngineOptions): BackendLoadOptions {
  return {
    model: resolveModel(o.model),
    ...(o.contextLength !== undefined ? { contextLength: o.contextLength } : {}),
    ...(o.prefillChunk !== undefined ? { prefillChunk: o.prefillChunk } : {}),
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.sharing ? { sharing: o.sharing } : {}),
    ...(o.cache !== undefined ? { cache: o.cache } : {}),
  };
}

/** An async queue of chunks that a generation fills and the caller iterates. */
class ChunkStream<T> implements AsyncIterableIterator<T> {
  private items: T[] = [];
  private waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  private closed = false;
  private error: unknown = undefined;
  cancelled = false;

  constructor(private readonly onCancel: () => void) {}

  push(item: T): void {
    if (this.closed) return;
    if (this.waiting) {
      this.waiting.resolve({ value: item, done: false });
      this.waiting = null;
    } else this.items.push(item);
  }

  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    if (this.waiting) {
      if (error !== undefined) this.waiting.reject(error);
      else this.waiting.resolve({ value: undefined, done: true });
      this.waiting = null;
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.closed) {
      if (this.error !== undefined) {
        const e = this.error;
        this.error = undefined;
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** The caller stopped iterating (break / return): stop generating. */
  return(): Promise<IteratorResult<T>> {
    if (!this.closed) {
      this.cancelled = true;
      this.onCancel();
    }
    this.items = [];
    this.closed = true;
    this.error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

function validateMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new InvalidArgumentError('messages must be a non-empty array of { role, content }.');
  messages.forEach((m, i) => {
    const r = m as Partial<ChatMessage>;
    if (!r || !['system', 'user', 'assistant', 'tool'].includes(r.role as string) || typeof r.content !== 'string') {
      throw new InvalidArgumentError(`messages[${i}] must be { role: 'system' | 'user' | 'assistant' | 'tool', content: string }.`);
    }
  });
}

function backendRequest(req: ChatCompletionRequest): BackendRequest {
  validateMessages(req.messages);
  if (req.n != null && req.n !== 1) throw new InvalidArgumentError(`Only n = 1 is supported, got n = ${req.n}.`);
  const stop = req.stop == null ? undefined : Array.isArray(req.stop) ? req.stop : [req.stop];
  if (stop && !stop.every((s) => typeof s === 'string' && s.length > 0)) throw new InvalidArgumentError('stop must be a non-empty string or an array of them.');
  if (req.max_tokens != null && (!Number.isInteger(req.max_tokens) || req.max_tokens < 0)) {
    throw new InvalidArgumentError(`max_tokens must be a non-negative integer, got ${req.max_tokens}.`);
  }
  return {
    messages: req.messages.map((m) => ({ role: m.role, content: m.content })),
    ...(req.max_tokens != null ? { maxTokens: req.max_tokens } : {}),
    ...(req.temperature != null ? { temperature: req.temperature } : {}),
    ...(req.top_p != null ? { topP: req.top_p } : {}),
    ...(req.seed != null ? { seed: req.seed } : {}),
    ...(stop ? { stop } : {}),
  };
}

function usageOf(r: BackendResult): CompletionUsage {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    extra: {
      reused_prompt_tokens: r.reusedTokens,
      prefill_tokens_per_s: r.prefillTokensPerSecond,
      decode_tokens_per_s: r.decodeTokensPerSecond,
      time_to_first_token_s: r.timeToFirstTokenMs / 1000,
      e2e_latency_s: r.totalMs / 1000,
      cache_tokens: r.cacheTokens,
      kv_bytes_full: r.kvBytesFull,
      kv_bytes_in_use: r.kvBytesInUse,
      kv_bytes_allocated: r.kvBytesAllocated,
      kv_footprint: r.kvFootprint,
      policy: r.policy,
    },
  };
}

let idCounter = 0;
function completionId(): string {
  idCounter++;
  const rand = Math.random().toString(36).slice(2, 10);
  return `chatcmpl-${rand}${idCounter.toString(36)}`;
}

class EngineHandle implements KvscopeEngine {
  readonly chat: { readonly completions: ChatCompletions };
  private backend: EngineBackend;
  private info: ModelInfo;
  private options: CreateEngineOptions;
  private tail: Promise<unknown> = Promise.resolve();
  private current: { cancelled: boolean } | null = null;
  private listeners = new Map<(s: CacheSnapshot) => void, SnapshotOptions>();
  private currentPolicy: PolicySpec;
  private currentSharing: SharingMap | Record<string, number> | null;
  private unloaded = false;

  constructor(backend: EngineBackend, info: ModelInfo, options: CreateEngineOptions, private readonly worker: boolean) {
    this.backend = backend;
    this.info = info;
    this.options = options;
    this.currentPolicy = options.policy ?? { name: 'full' };
    this.currentSharing = options.sharing ?? null;
    const create = ((req: ChatCompletionRequest) => this.create(req)) as ChatCompletions['create'];
    this.chat = { completions: { create } };
  }

  get model(): ModelInfo {
    return this.info;
  }

  get policy(): PolicySpec {
    return this.currentPolicy;
  }

  get sharing(): SharingMap | Record<string, number> | null {
    return this.currentSharing;
  }

  get inWorker(): boolean {
    return this.worker;
  }

  get inThreadEngine(): Engine | undefined {
    return this.worker ? undefined : ((this.backend as LocalBackend).current ?? undefined);
  }

  /** Runs jobs one at a time, in call order; a failed job does not block the next. */
  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.tail.then(job, job);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private modelName(): string {
    return this.info.source;
  }

  private async create(req: ChatCompletionRequest): Promise<AsyncIterableIterator<ChatCompletionChunk> | ChatCompletion> {
    if (this.unloaded) throw new KvscopeError('engine-not-loaded', 'The engine was unloaded: call engine.reload() first.');
    const request = backendRequest(req);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const model = this.modelName();
    const signal = req.signal;

    if (req.stream) {
      const includeUsage = req.stream_options?.include_usage !== false;
      let roleSent = false;
      const chunk = (delta: { content?: string }, finish: ChatCompletionFinishReason | null): ChatCompletionChunk => {
        const d: { role?: 'assistant'; content?: string } = roleSent ? { ...delta } : { role: 'assistant', ...delta };
        roleSent = true;
        return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: d, finish_reason: finish, logprobs: null }] };
      };
      const state = { cancelled: false };
      const stream = new ChunkStream<ChatCompletionChunk>(() => {
        state.cancelled = true;
        if (this.current === state) void this.backend.interrupt().catch(() => undefined);
      });
      void this.enqueue(async () => {
        const result = await this.runRequest(state, request, signal, (text) => stream.push(chunk({ content: text }, null)));
        stream.push(chunk({}, result.finishReason));
        if (includeUsage) stream.push({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageOf(result) });
        stream.close();
      }).catch((e: unknown) => stream.close(e));
      return stream;
    }

    let content = '';
    const result = await this.enqueue(() => this.runRequest({ cancelled: false }, request, signal, (text) => (content += text)));
    return {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: result.finishReason, logprobs: null }],
      usage: usageOf(result),
    };
  }

  /** One request at the head of the queue; an abort before its turn skips the model entirely. */
  private async runRequest(state: { cancelled: boolean }, request: BackendRequest, signal: AbortSignal | undefined, onText: (t: string) => void): Promise<BackendResult> {
    if (state.cancelled || signal?.aborted) return this.abortedResult();
    this.current = state;
    const onAbort = () => void this.backend.interrupt().catch(() => undefined);
    signal?.addEventListener('abort', onAbort);
    try {
      return await this.backend.generate(request, onText);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.current = null;
    }
  }

  private abortedResult(): BackendResult {
    return {
      finishReason: 'abort', promptTokens: 0, reusedTokens: 0, completionTokens: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0,
      timeToFirstTokenMs: 0, totalMs: 0, cacheTokens: 0, kvBytesFull: 0, kvBytesInUse: 0, kvBytesAllocated: 0, kvFootprint: 1, policy: this.currentPolicy,
    };
  }

  async interrupt(): Promise<void> {
    if (this.current) {
      this.current.cancelled = true;
      await this.backend.interrupt();
    }
  }

  setPolicy(nameOrSpec: string | PolicySpec, params: PolicyParams = {}): Promise<void> {
    let spec: PolicySpec;
    if (typeof nameOrSpec === 'string') {
      const { budget, ...rest } = params;
      const clean: Record<string, number | boolean | string> = {};
      for (const [k, v] of Object.entries(rest)) if (v !== undefined) clean[k] = v;
      spec = { name: nameOrSpec, ...(budget !== undefined ? { budget } : {}), ...(Object.keys(clean).length ? { params: clean } : {}) };
    } else spec = { ...nameOrSpec };
    if (!spec.name) return Promise.reject(new InvalidArgumentError('setPolicy needs a policy name.'));
    return this.enqueue(async () => {
      await this.backend.setPolicy(spec);
      this.currentPolicy = spec;
    });
  }

  listPolicies(): Promise<PolicyInfo[]> {
    return this.backend.listPolicies();
  }

  calibrateSharing(options: CalibrateSharingOptions = {}): Promise<SharingMap> {
    if (this.unloaded) return Promise.reject(new KvscopeError('engine-not-loaded', 'The engine was unloaded: call engine.reload() first.'));
    const { onProgress, signal, ...settings } = options;
    return this.enqueue(async () => {
      if (signal?.aborted) {
        const e = new Error('The calibration was aborted before it started.');
        e.name = 'AbortError';
        throw e;
      }
      const state = { cancelled: false };
      this.current = state;
      const onAbort = () => void this.backend.interrupt().catch(() => undefined);
      signal?.addEventListener('abort', onAbort);
      try {
        return await this.backend.calibrateSharing(settings, onProgress);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        this.current = null;
      }
    });
  }

  setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void> {
    return this.enqueue(async () => {
      await this.backend.setSharing(sharing);
      this.currentSharing = sharing;
    });
  }

  setGates(src: string | null): Promise<void> {
    return this.enqueue(() => this.backend.setGates(src));
  }

  sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings> {
    return this.enqueue(() => this.backend.sharingSavings(sharing));
  }

  private syncSnapshotListener(): Promise<void> {
    if (this.listeners.size === 0) return this.backend.setSnapshotListener(null);
    // One backend subscription serves every listener; the most recent listener's options win.
    const options = [...this.listeners.values()].pop();
    return this.backend.setSnapshotListener((s) => {
      for (const cb of this.listeners.keys()) cb(s);
    }, options);
  }

  onCacheSnapshot(callback: (s: CacheSnapshot) => void, options: SnapshotOptions = {}): () => void {
    this.listeners.set(callback, options);
    void this.syncSnapshotListener().catch(() => undefined);
    return () => {
      if (this.listeners.delete(callback)) void this.syncSnapshotListener().catch(() => undefined);
    };
  }

  async unload(): Promise<void> {
    this.unloaded = true;
    await this.interrupt().catch(() => undefined);
    await this.backend.unload().catch(() => undefined);
    if (this.worker) (this.backend as { terminate?: () => void }).terminate?.();
  }

  async reload(options: Partial<CreateEngineOptions> = {}): Promise<ModelInfo> {
    const merged: CreateEngineOptions = { ...this.options, ...options };
    return this.enqueue(async () => {
      await this.backend.unload().catch(() => undefined);
      if (this.unloaded && this.worker) this.backend = await createBackend(true);
      this.info = await this.backend.load(loadOptions(merged), merged.onProgress);
      this.options = merged;
      this.currentPolicy = merged.policy ?? { name: 'full' };
      this.currentSharing = merged.sharing ?? null;
      this.unloaded = false;
      if (this.listeners.size) await this.syncSnapshotListener();
      return this.info;
    });
  }

  simulateDeviceLoss(): Promise<void> {
    return this.backend.simulateDeviceLoss();
  }
}

// Both imported on demand: the page's main thread never loads the engine itself.
async function createBackend(worker: boolean): Promise<EngineBackend> {
  if (!worker) return new (await import('./backend')).LocalBackend();
  if (!workersAvailable()) throw new InvalidArgumentError('worker: true needs Web Workers (a browser); in Node use worker: false.');
  const [{ WorkerBackend }, { spawnEngineWorker }] = await Promise.all([import('./worker-backend'), import('./worker-spawn')]);
  return new WorkerBackend(spawnEngineWorker());
}

/**
 * Loads a model and returns an engine with an OpenAI-style `chat.completions.create`.
 *
 * ```ts
 * const engine = await createEngine({ model: 'https://example.com/SmolLM2-135M-Instruct/', onProgress: (p) => bar.value = p.fraction });
 * for await (const chunk of await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true })) {
 *   out.textContent += chunk.choices[0]?.delta.content ?? '';
 * }
 * ```
 */
export async function createEngine(options: CreateEngineOptions): Promise<KvscopeEngine> {
  const worker = options.worker ?? workersAvailable();
  const backend = await createBackend(worker);
  try {
    const info = await backend.load(loadOptions(options), options.onProgress);
    return new EngineHandle(backend, info, options, worker);
  } catch (e) {
    if (worker) (backend as { terminate?: () => void }).terminate?.();
    throw e;
  }
}
