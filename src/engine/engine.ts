/**
 * The engine: load a model, then generate with a KV cache that persists between calls
 * (a multi-turn chat prefills only the new turn), chunked prefill, GPU sampling, stop
 * strings, abort, and timings.
 */
import { Gpu, type GpuOptions } from '../gpu/device';
import { ContextOverflowError, DeviceLostError, InvalidArgumentError, KvscopeError } from '../errors';
import type { ModelConfig } from '../model/config';
import { loadModel, type LoadedModel } from '../model/weights';
import type { ProgressCallback } from '../model/source';
import { createTokenizer, type Tokenizer } from '../model/tokenizer';
import { createChatFormatter, type ChatFormatter, type ChatMessage } from '../model/chat-template';
import { GpuModel } from './gpu-model';
import { validateSamplingParams, type SamplingParams } from './ops/sample';
import { StopMatcher } from './stop';
import { resolvePolicy, type ResolvedPolicy } from '../kv/policies/registry';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import { resolveSharing, type SharingMap } from '../kv/sharing';
import { gateWeights, type GateWeights } from '../kv/gates';
import { parseSafetensors } from '../model/safetensors';
import { openModelSource } from '../model/source';
import type { WeightSet } from '../model/tensor';

/** Where Attention-Gate weights come from: a safetensors file (path/URL or bytes) or tensors. */
export type GateSource = string | URL | Uint8Array | WeightSet;

async function readGates(config: ModelConfig, src: GateSource): Promise<GateWeights> {
  let ws: WeightSet;
  if (src instanceof Uint8Array) ws = parseSafetensors(src, 'gate weights');
  else if (typeof src === 'string' || src instanceof URL) {
    const text = typeof src === 'string' ? src : src.href;
    const i = text.lastIndexOf('/');
    const dir = i > 0 ? text.slice(0, i) : i === 0 ? '/' : '.';
    const name = text.slice(i + 1);
    ws = parseSafetensors(await openModelSource(dir).read(name), text);
  } else ws = src;
  return gateWeights(config, ws);
}

export interface LoadProgress {
  stage: 'download' | 'upload';
  loaded: number;
  total: number;
  fraction: number;
}

export interface EngineOptions {
  /** A model directory (URL, or a local path in Node) or an already loaded model. */
  model: string | URL | LoadedModel;
  /** Cache capacity in tokens; default min(model context, 4096). */
  contextLength?: number;
  /** Prefill chunk size in tokens (default 128). */
  prefillChunk?: number;
  /** KV cache policy (default: `{ name: 'full' }`). */
  policy?: PolicySpec;
  /** KVSharer layer sharing: a calibrated map (see `calibrateSharing`) or `{ layer: sourceLayer }`. */
  sharing?: SharingMap | Record<string, number>;
  /**
   * Attention-Gate weights for the `attention-gate` policy: a safetensors file (path or URL,
   * or its bytes) or a WeightSet (see src/kv/gates.ts for the tensor names and shapes).
   */
  gates?: GateSource;
  gpu?: Gpu;
  gpuOptions?: GpuOptions;
  onProgress?: (p: LoadProgress) => void;
}

export interface SnapshotOptions {
  /** Take a snapshot every N generated tokens (default 8) ... */
  everyTokens?: number;
  /** ... or every `everyMs` milliseconds, whichever comes first (default 200). */
  everyMs?: number;
  /** Include the positions kept per (layer, KV head) (a larger readback). */
  positions?: boolean;
}

export interface GenerateOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Generation ends before any of these strings; they are not emitted. */
  stop?: string[];
  /** Extra token ids that end generation (EOS ids from the configs always do). */
  stopTokenIds?: number[];
  signal?: AbortSignal;
  /** <= 0 (default): greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Add the BOS token when the prompt is text (default: the tokenizer's own rule). */
  addBos?: boolean;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerationStats {
  finishReason: FinishReason;
  promptTokens: number;
  /** Prompt tokens whose cache entries were reused from the previous call. */
  reusedTokens: number;
  completionTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  prefillMs: number;
  decodeMs: number;
  /** KV footprint of everything cached so far, relative to a full cache under the same chunking (methods.md §5). */
  kvFootprint: number;
  /** Peak live entries per (layer, KV head) / tokens. */
  kvPeak: number;
  kvBytesAllocated: number;
  kvBytesInUse: number;
  policy: PolicySpec;
}

export interface GeneratedToken {
  id: number;
  /** Text released by this token (may be empty while a character or a stop string is incomplete). */
  text: string;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export class Engine {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  readonly model: GpuModel;
  readonly tokenizer: Tokenizer | undefined;
  readonly chat: ChatFormatter | undefined;
  readonly prefillChunk: number;
  readonly contextLength: number;
  /** Token ids whose keys and values are in the cache, in order. */
  private cached: number[] = [];
  private busy = false;
  private policy: ResolvedPolicy;
  private pendingPolicy: ResolvedPolicy | undefined;
  private source: Int32Array;
  private pendingSource: Int32Array | undefined;
  private snapshotListeners: { cb: (s: CacheSnapshot) => void; opts: Required<SnapshotOptions> }[] = [];
  lastStats: GenerationStats | undefined;

  private constructor(gpu: Gpu, private ownsGpu: boolean, loaded: LoadedModel, model: GpuModel, prefillChunk: number, policy: ResolvedPolicy, source: Int32Array) {
    this.gpu = gpu;
    this.policy = policy;
    this.source = source;
    this.config = loaded.config;
    this.model = model;
    this.prefillChunk = prefillChunk;
    this.contextLength = model.capacity;
    this.tokenizer = loaded.tokenizerJson ? createTokenizer(loaded) : undefined;
    this.chat = createChatFormatter(loaded);
  }

  static async load(options: EngineOptions): Promise<Engine> {
    const chunk = options.prefillChunk ?? 128;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 4096) {
      throw new InvalidArgumentError(`prefillChunk must be an integer in [1, 4096], got ${options.prefillChunk}.`);
    }
    const gpu = options.gpu ?? (await Gpu.create(options.gpuOptions));
    const progress: ProgressCallback = (loaded, total) =>
      options.onProgress?.({ stage: 'download', loaded, total, fraction: total > 0 ? loaded / total : 0 });
    const loaded =
      typeof options.model === 'string' || options.model instanceof URL
        ? await loadModel(options.model, { onProgress: progress })
        : options.model;
    const cfg = loaded.config;
    const ctx = options.contextLength ?? Math.min(cfg.contextLength, 4096);
    if (!Number.isInteger(ctx) || ctx < 1 || ctx > cfg.contextLength) {
      throw new InvalidArgumentError(`contextLength must be an integer in [1, ${cfg.contextLength}] (the model's context), got ${options.contextLength}.`);
    }
    const rows = Math.min(chunk, ctx);
    const policy = resolvePolicy(options.policy ?? { name: 'full' }, { context: ctx, chunk: rows, numLayers: cfg.numLayers, numKvHeads: cfg.numKvHeads, family: cfg.family });
    const source = resolveSharing(options.sharing, cfg);
    const gates = options.gates === undefined ? undefined : await readGates(cfg, options.gates);
    let model: GpuModel;
    try {
      model = new GpuModel(gpu, cfg, loaded.weights, { maxRows: rows, contextLength: ctx, policy, gates }, source);
    } catch (e) {
      if (!options.gpu) gpu.destroy();
      throw e;
    }
    await gpu.device.queue.onSubmittedWorkDone();
    const total = gpu.bytes('weights');
    options.onProgress?.({ stage: 'upload', loaded: total, total, fraction: 1 });
    return new Engine(gpu, !options.gpu, loaded, model, rows, policy, source);
  }

  /** Tokens currently in the cache. */
  get cachedTokens(): readonly number[] {
    return this.cached;
  }

  /** Empties the cache. */
  reset(): void {
    this.cached = [];
    this.model.cache.reset();
  }

  /** The active cache policy (a pending one applies at the next generate call). */
  get policySpec(): PolicySpec {
    return (this.pendingPolicy ?? this.policy).spec;
  }

  /**
   * Chooses the cache policy for the next turn. The spec is validated now (typed errors name
   * the bad parameter). At the next generate call the cache is re-allocated for the new
   * policy's bound and the whole prompt (the conversation so far) is prefilled again under
   * it: entries the old policy evicted are recomputed from their tokens, not restored.
   */
  setPolicy(spec: PolicySpec): void {
    if (this.busy) throw new InvalidArgumentError('setPolicy cannot run while generating; it applies from the next call.');
    const resolved = resolvePolicy(spec, { context: this.contextLength, chunk: this.prefillChunk, numLayers: this.config.numLayers, numKvHeads: this.config.numKvHeads, family: this.config.family });
    if (resolved.policy.gate && !this.model.hasGates) {
      throw new InvalidArgumentError(`Policy '${resolved.policy.name}' needs gate weights: load them first (Engine.load({ gates }) or engine.setGates).`);
    }
    this.pendingPolicy = resolved;
  }

  /**
   * Loads Attention-Gate weights (or removes them with undefined), checked against the model
   * (typed errors name the tensor). The cache is rebuilt: the conversation is prefilled again
   * at the next call, like after setPolicy.
   */
  async setGates(src: GateSource | undefined): Promise<void> {
    if (this.busy) throw new InvalidArgumentError('setGates cannot run while generating.');
    const g = src === undefined ? undefined : await readGates(this.config, src);
    const active = this.pendingPolicy ?? this.policy;
    if (!g && active.policy.gate) throw new InvalidArgumentError(`The '${active.policy.name}' policy is chosen: choose another policy before removing the gates.`);
    this.model.setGates(g);
    this.model.installCache(this.policy, this.source);
    this.cached = [];
  }

  /**
   * Chooses a KVSharer layer-sharing map (or none, with undefined) for the next call; like
   * setPolicy, the cache is rebuilt and the conversation prefilled again.
   */
  setSharing(sharing: SharingMap | Record<string, number> | undefined): void {
    if (this.busy) throw new InvalidArgumentError('setSharing cannot run while generating; it applies from the next call.');
    this.pendingSource = resolveSharing(sharing, this.config);
  }

  /** The layer whose cache each layer reads. */
  get cacheSource(): Int32Array {
    return this.pendingSource ?? this.source;
  }

  /** Installs a policy or sharing map chosen with setPolicy/setSharing: a new, empty cache. */
  private applyPendingPolicy(): void {
    if (!this.pendingPolicy && !this.pendingSource) return;
    this.policy = this.pendingPolicy ?? this.policy;
    this.source = this.pendingSource ?? this.source;
    this.model.installCache(this.policy, this.source);
    this.pendingPolicy = undefined;
    this.pendingSource = undefined;
    this.cached = [];
  }

  /** Calls `cb` with cache snapshots while generating (every N tokens or every T ms). Returns an unsubscribe function. */
  onSnapshot(cb: (s: CacheSnapshot) => void, options: SnapshotOptions = {}): () => void {
    const entry = { cb, opts: { everyTokens: options.everyTokens ?? 8, everyMs: options.everyMs ?? 200, positions: options.positions ?? false } };
    this.snapshotListeners.push(entry);
    return () => {
      this.snapshotListeners = this.snapshotListeners.filter((e) => e !== entry);
    };
  }

  /** Reads a snapshot of the cache now. */
  snapshot(positions = false): Promise<CacheSnapshot> {
    return this.model.cache.snapshot(positions);
  }

  private async emitSnapshots(force: boolean, tokensSince: number, msSince: number): Promise<boolean> {
    const due = this.snapshotListeners.filter((e) => force || tokensSince >= e.opts.everyTokens || msSince >= e.opts.everyMs);
    if (!due.length) return false;
    const withPositions = due.some((e) => e.opts.positions);
    const snap = await this.model.cache.snapshot(withPositions);
    if (withPositions && this.tokenizer) snap.tokenPieces = this.cached.map((id) => this.piece(id));
    for (const e of due) e.cb(snap);
    return true;
  }

  private pieces = new Map<number, string>();
  /** The text of one token (cached per id). */
  private piece(id: number): string {
    let p = this.pieces.get(id);
    if (p === undefined) {
      p = this.tokenizer!.decode([id], { skipSpecialTokens: false });
      this.pieces.set(id, p);
    }
    return p;
  }

  private checkDevice(): void {
    if (this.gpu.lost) {
      throw new DeviceLostError(`The GPU device was lost (${this.gpu.lost}); create a new engine to continue.`);
    }
  }

  /** Renders chat messages with the model's template into token ids. */
  encodeChat(messages: ChatMessage[]): { ids: number[]; stopStrings: string[]; stopTokenIds: number[] } {
    if (!this.tokenizer) throw new InvalidArgumentError('This model has no tokenizer, so it cannot take text or chat messages.');
    if (!this.chat) throw new InvalidArgumentError('This model has no chat template (neither chat_template nor conv_template).');
    const r = this.chat.render(messages, { addGenerationPrompt: true });
    return { ids: [...r.prefixTokenIds, ...this.tokenizer.encode(r.prompt, { addBos: false })], stopStrings: r.stopStrings, stopTokenIds: r.stopTokenIds };
  }

  /**
   * Feeds `tokens` after the longest prefix already cached and returns the sampled next token.
   * Shares the cache bookkeeping between generate() and the teacher-forcing helpers.
   */
  private async prefill(tokens: number[], sample: SamplingParams | null, signal?: AbortSignal): Promise<{ next: number; reused: number } | null> {
    this.applyPendingPolicy();
    let reuse = 0;
    while (reuse < this.cached.length && reuse < tokens.length && this.cached[reuse] === tokens[reuse]) reuse++;
    // The last prompt token must run to produce logits.
    if (reuse === tokens.length) reuse = tokens.length - 1;
    if (reuse < this.cached.length) {
      if (this.policy.budgets) {
        // An evicting cache cannot be cut back to a prefix: start over.
        reuse = 0;
        this.model.cache.reset();
      } else this.model.cache.truncate(reuse);
      this.cached.length = reuse;
    }
    let next = -1;
    for (let start = reuse; start < tokens.length; start += this.prefillChunk) {
      if (signal?.aborted) return null;
      const chunk = tokens.slice(start, start + this.prefillChunk);
      const last = start + chunk.length === tokens.length;
      this.model.writeTokens(chunk);
      next = await this.model.runStep(chunk.length, start, start, last && sample ? { params: sample, step: start + chunk.length - 1 } : undefined, last, last);
      this.cached.push(...chunk);
    }
    return { next, reused: reuse };
  }

  /**
   * Generates from a prompt (text, token ids, or chat messages). Yields tokens as they are
   * produced; the generator's return value (and `lastStats`) holds the finish reason and
   * timings. The cache keeps the conversation, so a follow-up call whose prompt extends it
   * only prefills the new part.
   */
  async *generate(prompt: string | number[] | { messages: ChatMessage[] }, options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, GenerationStats> {
    if (this.busy) throw new InvalidArgumentError('The engine is already generating; await the previous call (calls are not interleaved).');
    this.checkDevice();
    const maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new InvalidArgumentError(`maxTokens must be a non-negative integer, got ${maxTokens}.`);
    const params: SamplingParams = {
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
      seed: options.seed ?? 0,
    };
    validateSamplingParams(params);
    let ids: number[];
    const stopStrings = [...(options.stop ?? [])];
    const stopIds = new Set<number>([...this.config.eosTokenIds, ...(options.stopTokenIds ?? [])]);
    if (Array.isArray(prompt)) ids = prompt;
    else if (typeof prompt === 'string') {
      if (!this.tokenizer) throw new InvalidArgumentError('This model has no tokenizer; pass token ids.');
      ids = this.tokenizer.encode(prompt, options.addBos === undefined ? {} : { addBos: options.addBos });
    } else {
      const r = this.encodeChat(prompt.messages);
      ids = r.ids;
      stopStrings.push(...r.stopStrings);
      r.stopTokenIds.forEach((t) => stopIds.add(t));
    }
    if (ids.length === 0) throw new InvalidArgumentError('The prompt is empty.');
    for (const t of ids) {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) throw new InvalidArgumentError(`Token id ${t} is outside the vocabulary [0, ${this.config.vocabSize}).`);
    }
    if (ids.length > this.contextLength) {
      throw new ContextOverflowError(`The prompt has ${ids.length} tokens but the context holds ${this.contextLength}; shorten the prompt or load the engine with a larger contextLength (model maximum ${this.config.contextLength}).`);
    }

    this.busy = true;
    const stats: GenerationStats = {
      finishReason: 'length', promptTokens: ids.length, reusedTokens: 0, completionTokens: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0,
      prefillMs: 0, decodeMs: 0, kvFootprint: 0, kvPeak: 0, kvBytesAllocated: 0, kvBytesInUse: 0, policy: this.policySpec,
    };
    try {
      const t0 = now();
      const pre = await this.prefill(ids, params, options.signal);
      if (!pre) {
        stats.finishReason = 'abort';
        return stats;
      }
      stats.reusedTokens = pre.reused;
      stats.prefillMs = now() - t0;
      stats.prefillTokensPerSecond = ((ids.length - pre.reused) / stats.prefillMs) * 1000;
      const detok = this.tokenizer?.streamDecoder();
      const stop = new StopMatcher(stopStrings);
      let next = pre.next;
      const t1 = now();
      if (maxTokens === 0) {
        stats.finishReason = 'length';
        await this.finishStats(stats);
        return stats;
      }
      let snapTokens = 0;
      let snapTime = now();
      if (this.snapshotListeners.length) await this.emitSnapshots(true, 0, 0);
      for (;;) {
        if (stopIds.has(next)) {
          stats.finishReason = 'stop';
          break;
        }
        stats.completionTokens++;
        const piece = detok ? detok.push(next) : '';
        const { emit, stopped } = stop.push(piece);
        if (stopped) {
          if (emit) yield { id: next, text: emit };
          stats.finishReason = 'stop';
          break;
        }
        yield { id: next, text: emit };
        if (stats.completionTokens >= maxTokens || this.cached.length >= this.contextLength) {
          stats.finishReason = 'length';
          break;
        }
        if (options.signal?.aborted) {
          stats.finishReason = 'abort';
          break;
        }
        this.checkDevice();
        const pos = this.cached.length;
        this.model.writeTokens([next]);
        const id = await this.model.runStep(1, pos, pos, { params, step: pos });
        this.cached.push(next);
        next = id;
        snapTokens++;
        if (this.snapshotListeners.length && (await this.emitSnapshots(false, snapTokens, now() - snapTime))) {
          snapTokens = 0;
          snapTime = now();
        }
      }
      const tail = stop.flush() + (detok ? detok.flush() : '');
      if (tail && stats.finishReason !== 'stop') yield { id: -1, text: tail };
      stats.decodeMs = now() - t1;
      stats.decodeTokensPerSecond = stats.completionTokens > 1 ? ((stats.completionTokens - 1) / stats.decodeMs) * 1000 : 0;
      await this.finishStats(stats);
      if (this.snapshotListeners.length) await this.emitSnapshots(true, 0, 0);
      return stats;
    } catch (e) {
      if (this.gpu.lost && !(e instanceof KvscopeError)) throw new DeviceLostError(`The GPU device was lost (${this.gpu.lost}).`, { cause: e });
      throw e;
    } finally {
      this.lastStats = stats;
      this.busy = false;
    }
  }

  private async finishStats(stats: GenerationStats): Promise<void> {
    const snap = await this.model.cache.snapshot(false);
    stats.kvFootprint = snap.footprint;
    stats.kvPeak = snap.peak;
    stats.kvBytesAllocated = snap.kvBytesAllocated;
    stats.kvBytesInUse = snap.kvBytesInUse;
  }

  /** Generates and returns the whole text. */
  async generateText(prompt: string | number[] | { messages: ChatMessage[] }, options: GenerateOptions = {}): Promise<{ text: string; ids: number[]; stats: GenerationStats }> {
    let text = '';
    const ids: number[] = [];
    const it = this.generate(prompt, options);
    for (;;) {
      const r = await it.next();
      if (r.done) return { text, ids, stats: r.value };
      text += r.value.text;
      if (r.value.id >= 0) ids.push(r.value.id);
    }
  }

  /**
   * Teacher forcing for tests and metrics: feeds `tokens` one decode step at a time after
   * the current cache and returns the logits after each token.
   */
  async teacherForce(tokens: number[]): Promise<Float32Array[]> {
    this.checkDevice();
    this.applyPendingPolicy();
    if (this.cached.length + tokens.length > this.contextLength) throw new ContextOverflowError(`${this.cached.length + tokens.length} tokens exceed the context of ${this.contextLength}.`);
    const out: Float32Array[] = [];
    for (const t of tokens) {
      const pos = this.cached.length;
      this.model.writeTokens([t]);
      await this.model.runStep(1, pos, pos, undefined, true);
      this.cached.push(t);
      out.push(await this.model.readLogits());
    }
    return out;
  }

  /**
   * One step over up to `prefillChunk` tokens appended after the cache (a prefill chunk, or a
   * decode step when given one token); returns the last row's logits. For tests and metrics.
   */
  async forwardStep(tokens: number[], promptEnd = false): Promise<Float32Array> {
    this.checkDevice();
    this.applyPendingPolicy();
    if (tokens.length < 1 || tokens.length > this.prefillChunk) throw new InvalidArgumentError(`forwardStep takes 1..${this.prefillChunk} tokens, got ${tokens.length}.`);
    if (this.cached.length + tokens.length > this.contextLength) throw new ContextOverflowError(`${this.cached.length + tokens.length} tokens exceed the context of ${this.contextLength}.`);
    const pos = this.cached.length;
    this.model.writeTokens(tokens);
    await this.model.runStep(tokens.length, pos, pos, undefined, true, promptEnd);
    this.cached.push(...tokens);
    return this.model.readLogits();
  }

  /** Prefills `tokens` (chunked) after the cached prefix they share and returns the last logits. */
  async prefillLogits(tokens: number[]): Promise<Float32Array> {
    this.checkDevice();
    if (tokens.length > this.contextLength) throw new ContextOverflowError(`${tokens.length} tokens exceed the context of ${this.contextLength}.`);
    await this.prefill(tokens, null);
    return this.model.readLogits();
  }

  /** Releases the model's GPU memory (and the device, when the engine created it). The engine cannot be used afterwards. */
  unload(): void {
    this.model.destroy();
    if (this.ownsGpu) this.gpu.destroy();
  }
}
