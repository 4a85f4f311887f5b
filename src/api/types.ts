/**
 * The public types of kvscope's OpenAI / WebLLM-style API: chat completion requests,
 * responses and streamed chunks, plus kvscope's cache extras (usage with KV bytes, policy
 * listings, load progress).
 */
import type { ChatMessage } from '../model/chat-template';
import type { LoadedModel } from '../model/weights';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import type { SharingMap } from '../kv/sharing';

export type { ChatMessage, CacheSnapshot, PolicySpec, SharingMap };

/** Load progress: bytes read (`download`) then the upload to the GPU (`upload`, fraction 1). */
export interface LoadProgressEvent {
  stage: 'download' | 'upload';
  loaded: number;
  total: number;
  /** 0..1 within the stage (0 while the total is unknown). */
  fraction: number;
}

export interface CreateEngineOptions {
  /**
   * A model directory: an absolute URL, a URL relative to the page, a local path (Node), or
   * an already loaded model. HF layout (`config.json`, `*.safetensors`, `tokenizer.json`) and
   * MLC layout (`mlc-chat-config.json`, `tensor-cache.json`, shards) are both accepted.
   */
  model: string | URL | LoadedModel;
  /** The cache policy to start with (default: `{ name: 'full' }`, every entry kept). */
  policy?: PolicySpec;
  /**
   * KVSharer layer sharing to start with: a calibrated map (`engine.calibrateSharing()`, or a
   * saved `kv-sharing.json`) or `{ layer: sourceLayer }` (default: none).
   */
  sharing?: SharingMap | Record<string, number>;
  /** Cache capacity in tokens (default: min(model context, 4096)). */
  contextLength?: number;
  /** Prefill chunk size in tokens (default 128). */
  prefillChunk?: number;
  /**
   * Run the engine in a Web Worker (default: true where `Worker` exists and this is not
   * Node). With `false` it runs on the calling thread, which is what Node wants.
   */
  worker?: boolean;
  /** Load progress (bytes downloaded, then the GPU upload). */
  onProgress?: (p: LoadProgressEvent) => void;
  /**
   * Cache Storage for a model URL (browsers): on by default, reusing files WebLLM cached on
   * this origin and keeping kvscope's own copy (`kvscope/model`); `false` always downloads
   * and stores nothing. See docs/embedding.md, "Caching".
   */
  cache?: boolean;
}

/** What the loaded model looks like, for UIs and metrics. */
export interface ModelInfo {
  /** The model directory (URL or path) or `'in-memory'`. */
  source: string;
  family: string;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Cache capacity of this engine in tokens. */
  contextLength: number;
  /** The model's own maximum context. */
  modelContextLength: number;
  /** Bytes one token occupies in a full cache (K and V for every layer and KV head, plus its position). */
  kvBytesPerToken: number;
  /** GPU bytes of the uploaded weights. */
  weightBytes: number;
}

/** A registered cache policy's parameter, as the registry describes it. */
export interface PolicyParamInfo {
  name: string;
  type: 'number' | 'integer' | 'boolean' | 'string';
  description?: string;
  default?: number | boolean | string;
  min?: number;
  max?: number;
  options?: string[];
}

export interface PolicyInfo {
  name: string;
  description: string;
  /** Whether the policy takes a budget (entries kept per layer x KV head); `full` does not. */
  usesBudget: boolean;
  params: PolicyParamInfo[];
}

export interface SnapshotOptions {
  /** A snapshot at least every this many generated tokens (default 8). */
  everyTokens?: number;
  /** ... or every this many milliseconds, whichever comes first (default 200). */
  everyMs?: number;
  /** Include the kept positions per (layer, KV head) (default false; costs a larger read-back). */
  positions?: boolean;
}

// ---------------------------------------------------------------------------------------
// KVSharer calibration

/** Calibration progress; `fraction` never decreases and the last event (`stage: 'done'`) has fraction 1. */
export interface CalibrationProgressEvent {
  /** `statistics`: mean keys and values per layer over the samples; `search`: the greedy pair search; `done`: finished. */
  stage: 'statistics' | 'search' | 'done';
  /** Samples done (statistics) or candidate pairs considered (search). */
  done: number;
  total: number;
  /** 0..1 over the whole calibration. */
  fraction: number;
}

/** The settings of a calibration; everything except `onProgress` and `signal` is plain data (it crosses to the worker). */
export interface CalibrateSharingOptions {
  /** Cosine-similarity floor (shared vs. original final hidden states) for accepting a pair, in [-1, 1] (default 0.5). */
  threshold?: number;
  /**
   * Share this fraction of the layers, in [0, 0.5] (default 0.25): round(fraction x layers),
   * at most half the layers, since a source layer is never itself shared.
   */
  targetFraction?: number;
  /** Share this many layers instead (an integer in [0, layers / 2]); do not combine with `targetFraction`. */
  targetSharedLayers?: number;
  /**
   * The calibration set: texts (tokenized with BOS and cut to `sampleTokens`) or token-id
   * arrays (used as they are). Default: kvscope's held-out texts (`sampleCount` of them).
   */
  samples?: (string | number[])[];
  /** Without `samples`: how many of the 30 shipped held-out texts to use (default all 30). */
  sampleCount?: number;
  /** Tokens per text sample (default 64). */
  sampleTokens?: number;
  /** The paper's order tries the most dissimilar pairs first (default); `similar-first` is its ablation. */
  order?: 'dissimilar-first' | 'similar-first';
  /** Progress, on the calling thread. */
  onProgress?: (p: CalibrationProgressEvent) => void;
  /** Aborts the calibration (queued: it never starts; running: it stops and rejects with an `AbortError`). */
  signal?: AbortSignal;
}

/** What a sharing map saves under the policy of the next request (exact: computed as the cache allocates). */
export interface SharingSavings {
  /** Layers that read another layer's cache. */
  sharedLayers: number;
  /** KV bytes the cache allocates with the map. */
  kvBytesAllocated: number;
  /** ... and without it. */
  kvBytesUnshared: number;
  /** `kvBytesUnshared - kvBytesAllocated`. */
  kvBytesSaved: number;
}

// ---------------------------------------------------------------------------------------
// OpenAI-shaped chat completions

interface ChatCompletionRequestBase {
  messages: ChatMessage[];
  /** Ignored (the engine serves one model); accepted so OpenAI-shaped requests pass through. */
  model?: string | null;
  /** Most tokens to generate (default 256; the cache capacity also ends generation). */
  max_tokens?: number | null;
  /** Sampling temperature; 0 or unset = greedy (kvscope's default, unlike OpenAI's 1). */
  temperature?: number | null;
  /** Nucleus sampling mass (default 1). */
  top_p?: number | null;
  /** Seed for sampling, so sampled outputs are reproducible (default 0). */
  seed?: number | null;
  /** Generation ends before any of these strings; they are not emitted. */
  stop?: string | string[] | null;
  /** Only n = 1 is supported. */
  n?: number | null;
  /** Aborts this request: while queued it never starts; while running it ends with finish_reason 'abort'. */
  signal?: AbortSignal;
}

export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase {
  stream: true;
  /** kvscope sends the usage chunk unless `include_usage` is false (OpenAI's default is the reverse). */
  stream_options?: { include_usage?: boolean } | null;
}

export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase {
  stream?: false | null;
}

export type ChatCompletionRequest = ChatCompletionRequestStreaming | ChatCompletionRequestNonStreaming;

/** OpenAI's reasons plus `abort` (interrupted or aborted), as WebLLM does. */
export type ChatCompletionFinishReason = 'stop' | 'length' | 'abort';

/** kvscope's measurements for one request. */
export interface UsageExtra {
  /** Prompt tokens whose cache entries were reused from the previous request (prefix reuse). */
  reused_prompt_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  time_to_first_token_s: number;
  e2e_latency_s: number;
  /** Tokens the cache has seen (the full-cache length) after this request. */
  cache_tokens: number;
  /** KV bytes a full cache would hold for `cache_tokens`. */
  kv_bytes_full: number;
  /** KV bytes held by live entries after this request. */
  kv_bytes_in_use: number;
  /** KV bytes allocated on the GPU (capacity, all layers). */
  kv_bytes_allocated: number;
  /**
   * KV footprint relative to a full cache, from the cache manager's snapshot; 1 when every
   * entry is kept (the `full` policy).
   */
  kv_footprint: number;
  /** The policy in effect for this request. */
  policy: PolicySpec;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  extra: UsageExtra;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: 'assistant'; content: string };
    finish_reason: ChatCompletionFinishReason;
    logprobs: null;
  }[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** One choice while streaming; empty in the final usage chunk. */
  choices: {
    index: number;
    delta: { role?: 'assistant'; content?: string };
    finish_reason: ChatCompletionFinishReason | null;
    logprobs: null;
  }[];
  /** Only on the final chunk (whose `choices` is empty). */
  usage?: CompletionUsage;
}
